/* changes.c: a changeset recorder on SQLite's pre-update hook (see changes.h).
 *
 * The changeset format is the session extension's (sqlite3session.h): for
 * each table with changes a header ('T', the column count as a varint, one
 * byte per column, 0 or for a primary key column its place in the key
 * (1, 2, ...: the pk column of PRAGMA table_info), the name and a NUL), then its
 * changes: the operation (SQLITE_INSERT, SQLITE_DELETE, SQLITE_UPDATE), the
 * indirect flag (always 0 here), then the old record (DELETE, UPDATE) and
 * the new record (INSERT, UPDATE).  A record is one field per column: a type
 * byte (0 undefined, 1 integer, 2 real, 3 text, 4 blob, 5 NULL), then for an
 * integer or a real 8 bytes big-endian, for text or a blob a varint length
 * and the bytes.  An UPDATE's old record holds the primary key and the
 * columns that changed, its new record the columns that changed; every other
 * field is undefined.
 *
 * Each recorded row is a struct row: its table, its primary key serialised
 * as fields (the hash key), and its old record when it existed before its
 * first change.  Keys and old records live in one byte buffer, rows in one
 * array in the order of their first change, and an open-addressing table of
 * row numbers finds a row by key.  All three are kept from one take to the
 * next, so a barrier touches memory that is already mapped. */
#include "index/changes.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum {
	F_UNDEF = 0,
	F_INT = 1,
	F_REAL = 2,
	F_TEXT = 3,
	F_BLOB = 4,
	F_NULL = 5,
};

/* What chg_clear keeps by default (chg_set_keep): beyond this a one-off
 * huge barrier's memory is freed. */
#define KEEP_BYTES ((size_t)16 << 20)
#define MIN_SLOTS 1024u

struct buf {
	unsigned char *p;
	size_t len, cap;
};

struct chg_table {
	char *name;
	int ncol;
	unsigned char *pk; /* ncol bytes: 0, or the column's place in the key */
	sqlite3_stmt *sel; /* the row as it is now, by primary key */
};

struct row {
	size_t key, keylen; /* in bytes */
	size_t old, oldlen; /* in bytes; oldlen 0 when the row did not exist */
	uint64_t hash;
	size_t slot;
	unsigned table;
	int existed;
};

struct chg {
	sqlite3 *db;
	struct chg_table *t;
	size_t nt;
	int hooked;
	int enabled;
	int err; /* sticky: a change went unrecorded */
	size_t keep; /* bytes of records chg_clear keeps */
	struct row *rows;
	size_t nrows, caprows;
	struct buf bytes;
	size_t *slots; /* row number + 1, 0 free */
	size_t nslots; /* a power of two */
	struct buf key; /* scratch: the key being looked up */
	struct buf upd; /* scratch: an UPDATE's new record */
};

/* ---- buffers and fields ---- */

static int grow(struct buf *b, size_t more)
{
	if (b->cap - b->len >= more)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len < more)
		cap *= 2;
	unsigned char *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int put(struct buf *b, const void *p, size_t n)
{
	if (grow(b, n) < 0)
		return -ENOMEM;
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int put_byte(struct buf *b, unsigned char c)
{
	return put(b, &c, 1);
}

/* SQLite's varint (big-endian groups of 7 bits, the high bit set on all but
 * the last); lengths here are below 2^31, so the 9-byte form never occurs. */
static int put_varint(struct buf *b, uint32_t v)
{
	unsigned char tmp[5];
	int n = 0;

	do {
		tmp[n++] = (unsigned char)(v & 0x7f);
		v >>= 7;
	} while (v);
	unsigned char out[5];
	for (int i = 0; i < n; i++)
		out[i] = (unsigned char)(tmp[n - 1 - i] | (i < n - 1 ? 0x80 : 0));
	return put(b, out, (size_t)n);
}

static size_t get_varint(const unsigned char *p, const unsigned char *end, uint32_t *v)
{
	uint32_t x = 0;
	size_t i = 0;

	while (p + i < end && i < 5) {
		x = (x << 7) | (p[i] & 0x7f);
		if (!(p[i++] & 0x80)) {
			*v = x;
			return i;
		}
	}
	return 0;
}

static int put_u64(struct buf *b, unsigned char type, uint64_t u)
{
	unsigned char f[9] = { type };

	for (int i = 0; i < 8; i++)
		f[1 + i] = (unsigned char)(u >> (56 - 8 * i));
	return put(b, f, sizeof(f));
}

static int put_bytes(struct buf *b, unsigned char type, const void *p, int n)
{
	if (n < 0 || put_byte(b, type) < 0 || put_varint(b, (uint32_t)n) < 0)
		return -ENOMEM;
	return put(b, p, (size_t)n);
}

static int put_real(struct buf *b, double d)
{
	uint64_t u;

	memcpy(&u, &d, sizeof(u));
	return put_u64(b, F_REAL, u);
}

/* A value as a field.  Text and blob pointers are fetched before their
 * lengths, as SQLite asks. */
static int put_value(struct buf *b, sqlite3_value *v)
{
	const void *p;

	switch (sqlite3_value_type(v)) {
	case SQLITE_INTEGER:
		return put_u64(b, F_INT, (uint64_t)sqlite3_value_int64(v));
	case SQLITE_FLOAT:
		return put_real(b, sqlite3_value_double(v));
	case SQLITE_TEXT:
		p = sqlite3_value_text(v);
		return p ? put_bytes(b, F_TEXT, p, sqlite3_value_bytes(v)) : -ENOMEM;
	case SQLITE_BLOB:
		p = sqlite3_value_blob(v);
		return put_bytes(b, F_BLOB, p, sqlite3_value_bytes(v));
	default:
		return put_byte(b, F_NULL);
	}
}

/* Column i of a stepped statement as a field. */
static int put_column(struct buf *b, sqlite3_stmt *st, int i)
{
	const void *p;

	switch (sqlite3_column_type(st, i)) {
	case SQLITE_INTEGER:
		return put_u64(b, F_INT, (uint64_t)sqlite3_column_int64(st, i));
	case SQLITE_FLOAT:
		return put_real(b, sqlite3_column_double(st, i));
	case SQLITE_TEXT:
		p = sqlite3_column_text(st, i);
		return p ? put_bytes(b, F_TEXT, p, sqlite3_column_bytes(st, i)) : -ENOMEM;
	case SQLITE_BLOB:
		p = sqlite3_column_blob(st, i);
		return put_bytes(b, F_BLOB, p, sqlite3_column_bytes(st, i));
	default:
		return put_byte(b, F_NULL);
	}
}

/* The length of the field at p (0 if it runs past end), and where its
 * payload starts (*data) and how long it is (*n) for text and blobs. */
static size_t field_len(const unsigned char *p, const unsigned char *end,
			const unsigned char **data, uint32_t *n)
{
	if (p >= end)
		return 0;
	switch (p[0]) {
	case F_INT:
	case F_REAL:
		*data = p + 1;
		*n = 8;
		return end - p >= 9 ? 9 : 0;
	case F_TEXT:
	case F_BLOB: {
		size_t v = get_varint(p + 1, end, n);
		if (!v || (size_t)(end - p - 1 - v) < *n)
			return 0;
		*data = p + 1 + v;
		return 1 + v + *n;
	}
	default:
		*data = p + 1;
		*n = 0;
		return 1;
	}
}

static uint64_t get_be64(const unsigned char *p)
{
	uint64_t u = 0;

	for (int i = 0; i < 8; i++)
		u = (u << 8) | p[i];
	return u;
}

/* Bind the key's fields to parameters 1, 2, ... of st. */
static int bind_key(sqlite3_stmt *st, const unsigned char *p, size_t len)
{
	const unsigned char *end = p + len, *data;
	uint32_t n;
	int rc = SQLITE_OK;

	for (int i = 1; p < end && rc == SQLITE_OK; i++) {
		size_t fl = field_len(p, end, &data, &n);
		double d;
		uint64_t u;

		if (!fl)
			return -EIO;
		switch (p[0]) {
		case F_INT:
			rc = sqlite3_bind_int64(st, i, (sqlite3_int64)get_be64(data));
			break;
		case F_REAL:
			u = get_be64(data);
			memcpy(&d, &u, sizeof(d));
			rc = sqlite3_bind_double(st, i, d);
			break;
		case F_TEXT:
			rc = sqlite3_bind_text(st, i, (const char *)data, (int)n, SQLITE_STATIC);
			break;
		case F_BLOB:
			rc = sqlite3_bind_blob(st, i, data, (int)n, SQLITE_STATIC);
			break;
		default:
			return -EIO;
		}
		p += fl;
	}
	return rc == SQLITE_OK ? 0 : -EIO;
}

/* ---- recording ---- */

static uint64_t hash_key(unsigned table, const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ table;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h ^ (h >> 29);
}

static void place(struct chg *c, size_t i)
{
	size_t mask = c->nslots - 1, s = c->rows[i].hash & mask;

	while (c->slots[s])
		s = (s + 1) & mask;
	c->slots[s] = i + 1;
	c->rows[i].slot = s;
}

/* Room for one more row, the slot table at most half full. */
static int reserve_row(struct chg *c)
{
	if (c->nrows == c->caprows) {
		size_t cap = c->caprows ? c->caprows * 2 : 256;
		struct row *r = realloc(c->rows, cap * sizeof(*r));
		if (!r)
			return -ENOMEM;
		c->rows = r;
		c->caprows = cap;
	}
	if ((c->nrows + 1) * 2 > c->nslots) {
		size_t n = c->nslots ? c->nslots * 2 : MIN_SLOTS;
		size_t *s = calloc(n, sizeof(*s));
		if (!s)
			return -ENOMEM;
		free(c->slots);
		c->slots = s;
		c->nslots = n;
		for (size_t i = 0; i < c->nrows; i++)
			place(c, i);
	}
	return 0;
}

static void fail(struct chg *c, int err, const char *table, const char *why)
{
	if (!c->err)
		log_error(
			"index: cannot record a change to table %s (%s): every barrier now fails; "
			"unmount and mount again",
			table, why);
	c->err = err;
}

/* Field i of the change's old (from_new 0) or new values. */
static int change_value(sqlite3 *db, int from_new, int i, sqlite3_value **v)
{
	int rc = from_new ? sqlite3_preupdate_new(db, i, v) : sqlite3_preupdate_old(db, i, v);

	return rc == SQLITE_OK ? 0 : -EIO;
}

/* Note the row whose key is in the old (from_new 0) or new values of the
 * change the hook reports, unless it is noted already; existed says the row
 * was there before this change, and then its old values are kept. */
static int note(struct chg *c, unsigned ti, int from_new, int existed)
{
	struct chg_table *t = &c->t[ti];
	sqlite3_value *v;
	int r;

	c->key.len = 0;
	for (int i = 0; i < t->ncol; i++) {
		if (!t->pk[i])
			continue;
		if ((r = change_value(c->db, from_new, i, &v)) < 0)
			return r;
		/* The session extension ignores such rows too: no key, no change. */
		if (sqlite3_value_type(v) == SQLITE_NULL)
			return 0;
		if (put_value(&c->key, v) < 0)
			return -ENOMEM;
	}
	uint64_t h = hash_key(ti, c->key.p, c->key.len);
	size_t mask = c->nslots - 1;
	for (size_t s = h & mask; c->nslots && c->slots[s]; s = (s + 1) & mask) {
		const struct row *o = &c->rows[c->slots[s] - 1];
		if (o->hash == h && o->table == ti && o->keylen == c->key.len &&
		    memcmp(c->bytes.p + o->key, c->key.p, o->keylen) == 0)
			return 0;
	}
	if (reserve_row(c) < 0 || put(&c->bytes, c->key.p, c->key.len) < 0)
		return -ENOMEM;
	struct row *row = &c->rows[c->nrows];
	*row = (struct row){
		.key = c->bytes.len - c->key.len,
		.keylen = c->key.len,
		.old = c->bytes.len,
		.hash = h,
		.table = ti,
		.existed = existed,
	};
	for (int i = 0; existed && i < t->ncol; i++) {
		if ((r = change_value(c->db, 0, i, &v)) < 0)
			return r;
		if (put_value(&c->bytes, v) < 0)
			return -ENOMEM;
	}
	row->oldlen = c->bytes.len - row->old;
	place(c, c->nrows++);
	return 0;
}

static void hook(void *arg, sqlite3 *db, int op, const char *zdb, const char *name,
		 sqlite3_int64 key1, sqlite3_int64 key2)
{
	struct chg *c = arg;
	unsigned ti;
	int r;

	(void)db;
	(void)key1;
	(void)key2;
	if (!c->enabled || c->err || strcmp(zdb, "main") != 0)
		return;
	for (ti = 0; ti < c->nt && strcmp(c->t[ti].name, name) != 0; ti++)
		;
	if (ti == c->nt)
		return;
	if (sqlite3_preupdate_count(c->db) != c->t[ti].ncol) {
		fail(c, -EIO, name, "its columns changed");
		return;
	}
	if (op == SQLITE_INSERT)
		r = note(c, ti, 1, 0);
	else if ((r = note(c, ti, 0, 1)) == 0 && op == SQLITE_UPDATE)
		/* An UPDATE that moves the row to another key is an INSERT there
		 * too (and finds the row noted already when the key stays). */
		r = note(c, ti, 1, 0);
	if (r < 0)
		fail(c, r, name, r == -ENOMEM ? "out of memory" : "SQLite gave no values");
}

/* ---- the changeset ---- */

static int put_header(struct buf *out, const struct chg_table *t)
{
	if (put_byte(out, 'T') < 0 || put_varint(out, (uint32_t)t->ncol) < 0 ||
	    put(out, t->pk, (size_t)t->ncol) < 0)
		return -ENOMEM;
	return put(out, t->name, strlen(t->name) + 1);
}

/* An UPDATE from the row's old record to the row st holds now; nothing when
 * no column differs. */
static int put_update(struct chg *c, const struct chg_table *t, const struct row *r,
		      sqlite3_stmt *st, struct buf *out, int *changed)
{
	const unsigned char *p = c->bytes.p + r->old, *end = p + r->oldlen, *data;
	uint32_t n;

	c->upd.len = 0;
	*changed = 0;
	if (put_byte(out, SQLITE_UPDATE) < 0 || put_byte(out, 0) < 0)
		return -ENOMEM;
	for (int i = 0; i < t->ncol; i++) {
		size_t fl = field_len(p, end, &data, &n);
		if (!fl)
			return -EIO;
		/* The new value as a field, compared with the old one. */
		size_t mark = c->upd.len;
		if (put_column(&c->upd, st, i) < 0)
			return -ENOMEM;
		int differs = c->upd.len - mark != fl || memcmp(c->upd.p + mark, p, fl) != 0;
		if (!differs)
			c->upd.len = mark;
		if (differs || t->pk[i]) {
			if (put(out, p, fl) < 0)
				return -ENOMEM;
		} else if (put_byte(out, F_UNDEF) < 0) {
			return -ENOMEM;
		}
		if (!differs && put_byte(&c->upd, F_UNDEF) < 0)
			return -ENOMEM;
		*changed |= differs;
		p += fl;
	}
	return put(out, c->upd.p, c->upd.len);
}

/* The change row r amounts to, appended to out (after the table's header
 * when it is the table's first: *headed). */
static int put_row(struct chg *c, const struct row *r, struct buf *out, int *headed)
{
	const struct chg_table *t = &c->t[r->table];
	sqlite3_stmt *st = t->sel;
	size_t mark = out->len;
	int now, err = 0, changed = 1;

	if (bind_key(st, c->bytes.p + r->key, r->keylen) < 0)
		return -EIO;
	now = sqlite3_step(st);
	if (now != SQLITE_ROW && now != SQLITE_DONE) {
		log_error("index: reading table %s for the changeset: %s", t->name,
			  sqlite3_errmsg(c->db));
		sqlite3_reset(st);
		return -EIO;
	}
	now = now == SQLITE_ROW;
	if (!now && !r->existed)
		goto out;
	if (!*headed)
		err = put_header(out, t);
	if (err == 0 && now && !r->existed) {
		err = put_byte(out, SQLITE_INSERT) < 0 || put_byte(out, 0) < 0 ? -ENOMEM : 0;
		for (int i = 0; err == 0 && i < t->ncol; i++)
			err = put_column(out, st, i);
	} else if (err == 0 && !now) {
		err = put_byte(out, SQLITE_DELETE) < 0 || put_byte(out, 0) < 0 ? -ENOMEM : 0;
		if (err == 0)
			err = put(out, c->bytes.p + r->old, r->oldlen);
	} else if (err == 0) {
		err = put_update(c, t, r, st, out, &changed);
	}
	if (err == 0 && !changed)
		out->len = mark; /* back where it was: no change, maybe no header */
	else if (err == 0)
		*headed = 1;
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return err;
}

int chg_changeset(struct chg *c, void **cs, size_t *len)
{
	struct buf out = { 0 };
	int r = c->err;

	*cs = NULL;
	*len = 0;
	for (unsigned ti = 0; r == 0 && ti < c->nt; ti++) {
		int headed = 0;
		for (size_t i = 0; r == 0 && i < c->nrows; i++)
			if (c->rows[i].table == ti)
				r = put_row(c, &c->rows[i], &out, &headed);
	}
	if (r < 0 || out.len == 0) {
		free(out.p);
		return r;
	}
	*cs = out.p;
	*len = out.len;
	return 0;
}

/* ---- life cycle ---- */

void chg_clear(struct chg *c)
{
	if (c->bytes.cap + c->caprows * sizeof(*c->rows) > c->keep) {
		free(c->bytes.p);
		free(c->rows);
		free(c->slots);
		c->bytes = (struct buf){ 0 };
		c->rows = NULL;
		c->slots = NULL;
		c->caprows = c->nslots = 0;
	} else {
		/* Every used slot is some row's: clearing those clears the table. */
		for (size_t i = 0; i < c->nrows; i++)
			c->slots[c->rows[i].slot] = 0;
		c->bytes.len = 0;
	}
	c->nrows = 0;
}

int chg_isempty(const struct chg *c)
{
	return c->nrows == 0 && !c->err;
}

void chg_set_keep(struct chg *c, size_t bytes)
{
	c->keep = bytes;
}

void chg_enable(struct chg *c, int on)
{
	c->enabled = on;
}

/* Columns and primary key of table t, and the statement that reads a row. */
static int table_info(sqlite3 *db, struct chg_table *t)
{
	struct buf sql = { 0 }, where = { 0 };
	sqlite3_stmt *st = NULL;
	char *q = sqlite3_mprintf("PRAGMA main.table_info(%Q)", t->name);
	int r = q ? 0 : -ENOMEM, npk = 0, rc = SQLITE_DONE;

	if (r == 0 && sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
		r = -EIO;
	r = r ? r : put(&sql, "SELECT ", 7);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *col = (const char *)sqlite3_column_text(st, 1);
		int pk = sqlite3_column_int(st, 5) != 0, place = sqlite3_column_int(st, 5);
		unsigned char *f = realloc(t->pk, (size_t)t->ncol + 1);
		char *part = sqlite3_mprintf("%s\"%w\"", t->ncol ? ", " : "", col ? col : "");
		char *cond = pk ? sqlite3_mprintf("%s\"%w\" = ?%d", npk ? " AND " : "",
						  col ? col : "", npk + 1) :
				  NULL;

		if (f)
			t->pk = f;
		if (!f || !col || !part || (pk && !cond) || put(&sql, part, strlen(part)) < 0 ||
		    (pk && put(&where, cond, strlen(cond)) < 0))
			r = -ENOMEM;
		else
			t->pk[t->ncol++] = (unsigned char)(place > 0 && place < 256 ? place : pk);
		npk += pk;
		sqlite3_free(part);
		sqlite3_free(cond);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = -EIO;
	if (r == 0 && (t->ncol == 0 || npk == 0)) {
		log_error("index: table %s is missing or has no primary key: its changes cannot be "
			  "recorded",
			  t->name);
		r = -EINVAL;
	}
	sqlite3_finalize(st);
	sqlite3_free(q);
	q = NULL;
	if (r == 0) {
		q = sqlite3_mprintf(" FROM main.\"%w\" WHERE %.*s", t->name, (int)where.len,
				    (const char *)where.p);
		if (!q || put(&sql, q, strlen(q) + 1) < 0)
			r = -ENOMEM;
	}
	if (r == 0 && sqlite3_prepare_v3(db, (const char *)sql.p, -1, SQLITE_PREPARE_PERSISTENT,
					 &t->sel, NULL) != SQLITE_OK) {
		log_error("index: prepare %s: %s", (const char *)sql.p, sqlite3_errmsg(db));
		r = -EIO;
	}
	sqlite3_free(q);
	free(sql.p);
	free(where.p);
	return r;
}

struct chg *chg_new(sqlite3 *db, const char *const *tables, size_t ntables)
{
	struct chg *c = calloc(1, sizeof(*c));
	int r = c ? 0 : -ENOMEM;

	if (r == 0) {
		c->db = db;
		c->enabled = 1;
		c->keep = KEEP_BYTES;
		c->t = calloc(ntables, sizeof(*c->t));
		r = c->t ? 0 : -ENOMEM;
	}
	for (size_t i = 0; r == 0 && i < ntables; i++) {
		c->t[i].name = strdup(tables[i]);
		c->nt++;
		r = c->t[i].name ? table_info(db, &c->t[i]) : -ENOMEM;
	}
	if (r < 0) {
		chg_free(c);
		errno = -r;
		return NULL;
	}
	sqlite3_preupdate_hook(db, hook, c);
	c->hooked = 1;
	return c;
}

void chg_free(struct chg *c)
{
	if (!c)
		return;
	if (c->hooked)
		sqlite3_preupdate_hook(c->db, NULL, NULL);
	for (size_t i = 0; i < c->nt; i++) {
		free(c->t[i].name);
		free(c->t[i].pk);
		sqlite3_finalize(c->t[i].sel);
	}
	free(c->t);
	free(c->rows);
	free(c->slots);
	free(c->bytes.p);
	free(c->key.p);
	free(c->upd.p);
	free(c);
}
