/* test_changes.c: the changeset recorder (src/index/changes.c) against
 * known answers and against SQLite's session extension, whose format and
 * semantics it reproduces.
 *
 * - Fixed vectors: single changes whose bytes are written out here from the
 *   format's description, and which the session extension must produce too.
 * - Random sequences: the same statements (inserts, upserts, replaces,
 *   updates of keys and values, deletes, rolled-back savepoints) run on two
 *   databases, one recorded by the recorder, one by a session; at random
 *   points both take a changeset.  The two must hold the same changes (the
 *   session orders rows by its hash, so they are compared as sorted sets),
 *   and the recorder's changesets applied in order to a third copy must give
 *   the recorded database's rows. */
#include <criterion/criterion.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/changes.h"

/* Every kind of key the index has: a rowid alias (with AUTOINCREMENT and a
 * UNIQUE pair, like dirent), a TEXT key on a rowid table (super), composite
 * keys WITHOUT ROWID (extent, xattr), and values of every type. */
static const char schema[] =
	"CREATE TABLE kv(k TEXT PRIMARY KEY, v);"
	"CREATE TABLE ent(id INTEGER PRIMARY KEY AUTOINCREMENT, parent INTEGER, name BLOB,"
	" ino INTEGER, UNIQUE(parent, name));"
	"CREATE TABLE ext(ino INTEGER, blk INTEGER, seg INTEGER, r REAL, b BLOB,"
	" PRIMARY KEY(ino, blk)) WITHOUT ROWID;"
	"CREATE TABLE other(k INTEGER PRIMARY KEY, v);";
static const char *const tables[] = { "kv", "ent", "ext" };

static sqlite3 *open_db(void)
{
	sqlite3 *db;

	cr_assert_eq(
		sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
		SQLITE_OK);
	cr_assert_eq(sqlite3_exec(db, schema, NULL, NULL, NULL), SQLITE_OK, "%s",
		     sqlite3_errmsg(db));
	return db;
}

static void exec(sqlite3 *db, const char *sql)
{
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s: %s", sql,
		     sqlite3_errmsg(db));
}

static struct chg *recorder(sqlite3 *db)
{
	struct chg *c = chg_new(db, tables, sizeof(tables) / sizeof(tables[0]));

	cr_assert_not_null(c, "chg_new: %s", strerror(errno));
	return c;
}

static sqlite3_session *session(sqlite3 *db)
{
	sqlite3_session *s;

	cr_assert_eq(sqlite3session_create(db, "main", &s), SQLITE_OK);
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
		cr_assert_eq(sqlite3session_attach(s, tables[i]), SQLITE_OK);
	return s;
}

static void take(struct chg *c, void **cs, size_t *len)
{
	cr_assert_eq(chg_changeset(c, cs, len), 0);
	chg_clear(c);
}

/* The recorder's and the session's changeset of one statement on a fresh
 * pair of databases (after setup on both, unrecorded). */
static void both(const char *setup, const char *sql, void **mine, size_t *mlen, void **theirs,
		 int *tlen)
{
	sqlite3 *a = open_db(), *b = open_db();

	if (setup) {
		exec(a, setup);
		exec(b, setup);
	}
	struct chg *c = recorder(a);
	sqlite3_session *s = session(b);

	exec(a, sql);
	exec(b, sql);
	take(c, mine, mlen);
	cr_assert_eq(sqlite3session_changeset(s, tlen, theirs), SQLITE_OK);
	chg_free(c);
	sqlite3session_delete(s);
	sqlite3_close(a);
	sqlite3_close(b);
}

static void expect_vector(const char *setup, const char *sql, const unsigned char *want, size_t n)
{
	void *mine, *theirs;
	size_t mlen;
	int tlen;

	both(setup, sql, &mine, &mlen, &theirs, &tlen);
	cr_assert_eq(mlen, n, "%s: %zu bytes, want %zu", sql, mlen, n);
	cr_assert_arr_eq(mine, want, n, "%s: bytes differ from the known answer", sql);
	cr_assert_eq((size_t)tlen, n, "%s: the session extension made %d bytes", sql, tlen);
	cr_assert_arr_eq(theirs, want, n, "%s: the session extension disagrees", sql);
	free(mine);
	sqlite3_free(theirs);
}

Test(changes, known_answer_insert)
{
	/* clang-format off */
	static const unsigned char want[] = {
		'T', 2, 1, 0, 'k', 'v', 0,		      /* kv: 2 columns, k is the key */
		SQLITE_INSERT, 0,			      /* insert, direct */
		3, 1, 'a',				      /* k: text "a" */
		1, 0, 0, 0, 0, 0, 0, 0x01, 0x2c,	      /* v: integer 300 */
	};
	/* clang-format on */

	expect_vector(NULL, "INSERT INTO kv VALUES('a', 300)", want, sizeof(want));
}

Test(changes, known_answer_update)
{
	/* clang-format off */
	static const unsigned char want[] = {
		'T', 5, 1, 2, 0, 0, 0, 'e', 'x', 't', 0, /* ino and blk: the key's 1st and 2nd */
		SQLITE_UPDATE, 0,
		/* old: both keys, seg as it was, r and b unchanged (undefined) */
		1, 0, 0, 0, 0, 0, 0, 0, 7,
		1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
		1, 0, 0, 0, 0, 0, 0, 0, 9,
		0,
		0,
		/* new: only seg */
		0,
		0,
		1, 0, 0, 0, 0, 0, 0, 0, 10,
		0,
		0,
	};
	/* clang-format on */

	expect_vector("INSERT INTO ext VALUES(7, -2, 9, 0.5, x'00')",
		      "UPDATE ext SET seg = 10 WHERE ino = 7", want, sizeof(want));
}

Test(changes, known_answer_delete)
{
	/* Then b: a blob of 200 bytes, whose length is the two-byte varint
	 * 0x81 0x48. */
	/* clang-format off */
	static const unsigned char head[] = {
		'T', 5, 1, 2, 0, 0, 0, 'e', 'x', 't', 0,
		SQLITE_DELETE, 0,
		1, 0, 0, 0, 0, 0, 0, 0, 7,		/* ino 7 */
		1, 0, 0, 0, 0, 0, 0, 0, 1,		/* blk 1 */
		5,					/* seg NULL */
		2, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0,	/* r: real 0.5 */
		4, 0x81, 0x48,				/* b: blob of 200 bytes */
	};
	/* clang-format on */
	unsigned char want[sizeof(head) + 200];

	memcpy(want, head, sizeof(head));
	memset(want + sizeof(head), 'x', 200);
	expect_vector("INSERT INTO ext VALUES(7, 1, NULL, 0.5,"
		      " CAST(replace(hex(zeroblob(200)), '00', 'x') AS BLOB))",
		      "DELETE FROM ext", want, sizeof(want));
}

Test(changes, nothing_for_what_cancels_out)
{
	sqlite3 *db = open_db();
	struct chg *c = recorder(db);
	void *cs;
	size_t len;

	exec(db, "INSERT INTO kv VALUES('keep', 1)");
	take(c, &cs, &len);
	cr_assert_gt(len, 0);
	free(cs);
	cr_assert(chg_isempty(c));
	/* Inserted then deleted; updated and back; changed in a rolled-back
	 * savepoint; a table not recorded; nothing at all. */
	exec(db, "INSERT INTO kv VALUES('gone', 2); DELETE FROM kv WHERE k = 'gone';"
		 "UPDATE kv SET v = 5 WHERE k = 'keep'; UPDATE kv SET v = 1 WHERE k = 'keep';"
		 "SAVEPOINT s; INSERT INTO ext VALUES(1, 1, 1, 1.0, x'01');"
		 "DELETE FROM kv; ROLLBACK TO s; RELEASE s;"
		 "INSERT INTO other VALUES(1, 1)");
	cr_assert_not(chg_isempty(c));
	take(c, &cs, &len);
	cr_assert_eq(len, 0);
	cr_assert_null(cs);
	/* Not recording. */
	chg_enable(c, 0);
	exec(db, "INSERT INTO kv VALUES('quiet', 3)");
	chg_enable(c, 1);
	cr_assert(chg_isempty(c));
	chg_free(c);
	sqlite3_close(db);
}

Test(changes, changed_columns_are_an_error_that_stays)
{
	sqlite3 *db = open_db();
	struct chg *c = recorder(db);
	void *cs;
	size_t len;

	exec(db, "ALTER TABLE kv ADD COLUMN extra");
	exec(db, "INSERT INTO kv VALUES('a', 1, 2)");
	cr_assert_eq(chg_changeset(c, &cs, &len), -EIO);
	cr_assert_null(cs);
	cr_assert_not(chg_isempty(c));
	chg_clear(c);
	exec(db, "INSERT INTO ent(parent, name, ino) VALUES(1, 'x', 2)");
	cr_assert_eq(chg_changeset(c, &cs, &len), -EIO, "a lost change must not be forgotten");
	chg_free(c);
	sqlite3_close(db);
}

Test(changes, missing_table_or_key_is_refused)
{
	sqlite3 *db = open_db();
	static const char *const nokey[] = { "kv", "nokey" };
	static const char *const absent[] = { "absent" };

	exec(db, "CREATE TABLE nokey(a, b)");
	cr_assert_null(chg_new(db, nokey, 2));
	cr_assert_null(chg_new(db, absent, 1));
	/* The failed attempts left no hook behind: a recorder still works. */
	struct chg *c = recorder(db);
	exec(db, "INSERT INTO kv VALUES('a', 1)");
	cr_assert_not(chg_isempty(c));
	chg_free(c);
	sqlite3_close(db);
}

/* ---- random sequences against the session extension ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/* One random statement, as SQL; small key spaces make collisions common. */
static void random_sql(char *sql, size_t n)
{
	unsigned k = rnd(12), v = rnd(5);
	static const char *const vals[] = { "NULL", "1", "2.5", "'t'", "x'0102'" };

	switch (rnd(14)) {
	case 0:
		snprintf(sql, n, "INSERT OR IGNORE INTO kv VALUES('k%u', %s)", k, vals[v]);
		break;
	case 1:
		snprintf(sql, n,
			 "INSERT INTO kv VALUES('k%u', %s) ON CONFLICT(k) DO UPDATE SET"
			 " v = excluded.v",
			 k, vals[v]);
		break;
	case 2:
		snprintf(sql, n, "DELETE FROM kv WHERE k = 'k%u'", k);
		break;
	case 3:
		/* Moves the row to another key (or fails on an existing one). */
		snprintf(sql, n, "UPDATE OR IGNORE kv SET k = 'k%u' WHERE k = 'k%u'", rnd(12), k);
		break;
	case 4:
		snprintf(sql, n,
			 "INSERT OR IGNORE INTO ent(parent, name, ino) VALUES(%u, 'n%u', %u)",
			 k % 3, v, rnd(100));
		break;
	case 5:
		snprintf(sql, n, "DELETE FROM ent WHERE parent = %u AND name = 'n%u'", k % 3, v);
		break;
	case 6:
		snprintf(sql, n, "UPDATE ent SET ino = %u WHERE parent = %u", rnd(100), k % 3);
		break;
	case 7:
		/* REPLACE deletes the row holding the same (parent, name). */
		snprintf(sql, n,
			 "INSERT OR REPLACE INTO ent(parent, name, ino) VALUES(%u, 'n%u', %u)",
			 k % 3, v, rnd(100));
		break;
	case 8:
	case 9:
		snprintf(sql, n,
			 "INSERT INTO ext VALUES(%u, %u, %u, %s, %s) ON CONFLICT(ino, blk)"
			 " DO UPDATE SET seg = excluded.seg, r = excluded.r",
			 k % 4, v, rnd(3), vals[rnd(5)], vals[rnd(5)]);
		break;
	case 10:
		snprintf(sql, n, "DELETE FROM ext WHERE ino = %u AND blk >= %u", k % 4, v);
		break;
	case 11:
		snprintf(sql, n, "UPDATE ext SET b = %s WHERE ino = %u", vals[v], k % 4);
		break;
	case 12:
		snprintf(sql, n,
			 "UPDATE OR IGNORE ext SET blk = blk + 1 WHERE ino = %u AND blk = %u",
			 k % 4, v);
		break;
	default:
		snprintf(sql, n, "INSERT OR REPLACE INTO other VALUES(%u, %u)", k, v);
		break;
	}
}

/* One change as text: table, operation, every old and new field. */
static char *describe(sqlite3_changeset_iter *it)
{
	const char *table;
	int ncol, op, indirect;
	size_t cap = 1024, len = 0;
	char *s = malloc(cap);

	cr_assert_not_null(s);
	cr_assert_eq(sqlite3changeset_op(it, &table, &ncol, &op, &indirect), SQLITE_OK);
	len += (size_t)snprintf(s, cap, "%s %d %d:", table, op, indirect);
	for (int side = 0; side < 2; side++) {
		for (int i = 0; i < ncol; i++) {
			sqlite3_value *v = NULL;
			if (side == 0 && op != SQLITE_INSERT)
				cr_assert_eq(sqlite3changeset_old(it, i, &v), SQLITE_OK);
			if (side == 1 && op != SQLITE_DELETE)
				cr_assert_eq(sqlite3changeset_new(it, i, &v), SQLITE_OK);
			char f[300];
			if (!v)
				snprintf(f, sizeof(f), " -");
			else if (sqlite3_value_type(v) == SQLITE_BLOB ||
				 sqlite3_value_type(v) == SQLITE_TEXT)
				snprintf(f, sizeof(f), " %d:%.*s", sqlite3_value_type(v),
					 sqlite3_value_bytes(v),
					 (const char *)sqlite3_value_text(v));
			else
				snprintf(f, sizeof(f), " %d:%s", sqlite3_value_type(v),
					 (const char *)sqlite3_value_text(v));
			size_t fl = strlen(f);
			if (len + fl + 2 > cap) {
				cap = (len + fl + 2) * 2;
				s = realloc(s, cap);
				cr_assert_not_null(s);
			}
			memcpy(s + len, f, fl + 1);
			len += fl;
		}
		s[len++] = '|';
		s[len] = '\0';
	}
	return s;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The changes of cs, described and sorted. */
static size_t changes_of(const void *cs, size_t len, char ***out)
{
	sqlite3_changeset_iter *it;
	size_t n = 0;
	char **v = NULL;

	*out = NULL;
	if (len == 0)
		return 0;
	cr_assert_eq(sqlite3changeset_start(&it, (int)len, (void *)cs), SQLITE_OK);
	while (sqlite3changeset_next(it) == SQLITE_ROW) {
		v = realloc(v, (n + 1) * sizeof(*v));
		cr_assert_not_null(v);
		v[n++] = describe(it);
	}
	cr_assert_eq(sqlite3changeset_finalize(it), SQLITE_OK, "the changeset does not parse");
	qsort(v, n, sizeof(*v), cmp_str);
	*out = v;
	return n;
}

static char *dump(sqlite3 *db)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	sqlite3_stmt *st;
	static const char *const q[] = {
		"SELECT k, quote(v) FROM kv ORDER BY k",
		"SELECT id, parent, quote(name), ino FROM ent ORDER BY id",
		"SELECT ino, blk, quote(seg), quote(r), quote(b) FROM ext WHERE length(b) < 100"
		" UNION ALL SELECT ino, blk, quote(seg), quote(r), length(b) || hex(substr(b, 1, 8))"
		" FROM ext WHERE length(b) >= 100 ORDER BY 1, 2",
	};

	cr_assert_not_null(f);
	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		cr_assert_eq(sqlite3_prepare_v2(db, q[i], -1, &st, NULL), SQLITE_OK);
		while (sqlite3_step(st) == SQLITE_ROW) {
			for (int c = 0; c < sqlite3_column_count(st); c++)
				fprintf(f, "%s ", (const char *)sqlite3_column_text(st, c));
			fputc('\n', f);
		}
		sqlite3_finalize(st);
		fputs("--\n", f);
	}
	fclose(f);
	return out;
}

static int no_conflicts(void *arg, int type, sqlite3_changeset_iter *it)
{
	(void)it;
	++*(int *)arg;
	(void)type;
	return SQLITE_CHANGESET_ABORT;
}

Test(changes, random_sequences_match_the_session_extension, .timeout = 120)
{
	sqlite3 *a = open_db(), *b = open_db(), *replica = open_db();
	struct chg *c = recorder(a);
	sqlite3_session *s = session(b);
	size_t takes = 0, changes = 0;

	for (int round = 0; round < 250; round++) {
		int in_txn = rnd(2), nops = 1 + (int)rnd(40);
		if (in_txn) {
			exec(a, "BEGIN");
			exec(b, "BEGIN");
		}
		for (int i = 0; i < nops; i++) {
			char sql[256];
			int sp = rnd(8) == 0;
			random_sql(sql, sizeof(sql));
			if (sp) {
				exec(a, "SAVEPOINT op");
				exec(b, "SAVEPOINT op");
			}
			int ra = sqlite3_exec(a, sql, NULL, NULL, NULL);
			int rb = sqlite3_exec(b, sql, NULL, NULL, NULL);
			cr_assert_eq(ra, rb, "%s: %d against %d", sql, ra, rb);
			if (sp) {
				const char *end =
					rnd(2) ? "ROLLBACK TO op; RELEASE op" : "RELEASE op";
				exec(a, end);
				exec(b, end);
			}
		}
		/* The recorder reads the rows inside the open transaction, as idx
		 * does; the session needs none. */
		if (rnd(3) == 0) {
			void *mine, *theirs;
			size_t mlen;
			int tlen;
			char **ma, **tb;

			cr_assert_eq(chg_changeset(c, &mine, &mlen), 0);
			chg_clear(c);
			cr_assert_eq(sqlite3session_changeset(s, &tlen, &theirs), SQLITE_OK);
			sqlite3session_delete(s);
			s = session(b);
			size_t nm = changes_of(mine, mlen, &ma),
			       nt = changes_of(theirs, (size_t)tlen, &tb);
			cr_assert_eq(nm, nt, "round %d: %zu changes against the session's %zu",
				     round, nm, nt);
			for (size_t i = 0; i < nm; i++) {
				cr_assert_str_eq(ma[i], tb[i], "round %d", round);
				free(ma[i]);
				free(tb[i]);
			}
			free(ma);
			free(tb);
			if (mlen) {
				int conflicts = 0;
				cr_assert_eq(sqlite3changeset_apply(replica, (int)mlen, mine, NULL,
								    no_conflicts, &conflicts),
					     SQLITE_OK);
				cr_assert_eq(conflicts, 0, "round %d: replay conflicts", round);
			}
			takes++;
			changes += nm;
			free(mine);
			sqlite3_free(theirs);
			if (in_txn) {
				exec(a, "COMMIT");
				exec(b, "COMMIT");
			}
			char *da = dump(a), *dr = dump(replica);
			cr_assert_str_eq(dr, da, "round %d: the replica differs", round);
			free(da);
			free(dr);
		} else if (in_txn) {
			exec(a, "COMMIT");
			exec(b, "COMMIT");
		}
	}
	cr_assert_gt(takes, 50);
	cr_assert_gt(changes, 500, "the sequences were too tame: %zu changes", changes);
	chg_free(c);
	sqlite3session_delete(s);
	sqlite3_close(a);
	sqlite3_close(b);
	sqlite3_close(replica);
}

static void apply(sqlite3 *db, void *cs, size_t len)
{
	int conflicts = 0;

	cr_assert_eq(sqlite3changeset_apply(db, (int)len, cs, NULL, no_conflicts, &conflicts),
		     SQLITE_OK);
	cr_assert_eq(conflicts, 0);
	free(cs);
}

Test(changes, big_take_then_memory_returned)
{
	sqlite3 *db = open_db(), *replica = open_db();
	struct chg *c = recorder(db);
	void *cs;
	size_t len;

	/* Old records beyond what chg_clear keeps: freed, then grown again. */
	chg_set_keep(c, 64 << 10);
	exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)"
		 " INSERT INTO ext SELECT i, 0, i, 0.0, zeroblob(1000) FROM n");
	take(c, &cs, &len);
	apply(replica, cs, len);
	exec(db, "UPDATE ext SET seg = seg + 1");
	take(c, &cs, &len);
	apply(replica, cs, len);
	exec(db, "DELETE FROM ext WHERE ino % 2 = 0; INSERT INTO kv VALUES('after', 1)");
	take(c, &cs, &len);
	apply(replica, cs, len);
	char *da = dump(db), *dr = dump(replica);
	cr_assert(strcmp(da, dr) == 0, "the replica differs");
	free(da);
	free(dr);
	chg_free(c);
	sqlite3_close(db);
	sqlite3_close(replica);
}
