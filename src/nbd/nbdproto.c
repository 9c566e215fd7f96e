/* nbdproto.c: the NBD server's protocol logic over byte buffers: greeting,
 * client flags, options and their replies (structured replies and the
 * base:allocation metadata context included), request parsing and checking,
 * simple and structured reply encoding, error mapping.  No I/O here; see
 * nbdproto.h. */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "nbd/nbdproto.h"

int nbds_out_put(struct nbds_out *o, const void *data, size_t len)
{
	if (o->cap - o->len < len) {
		size_t cap = MAX(o->cap * 2, o->len + len + 64);
		uint8_t *b = realloc(o->buf, cap);
		if (!b)
			return -ENOMEM;
		o->buf = b;
		o->cap = cap;
	}
	if (len)
		memcpy(o->buf + o->len, data, len);
	o->len += len;
	return 0;
}

void nbds_out_free(struct nbds_out *o)
{
	free(o->buf);
	o->buf = NULL;
	o->len = o->cap = 0;
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

void nbds_greeting(uint8_t buf[NBDS_GREETING_LEN])
{
	struct nbd_new_handshake h = {
		.nbdmagic = htobe64(NBD_MAGIC),
		.version = htobe64(NBD_NEW_VERSION),
		.gflags = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
	};
	memcpy(buf, &h, sizeof(h));
}

int nbds_parse_client_flags(const uint8_t buf[4], int *no_zeroes)
{
	uint32_t f = get_be32(buf);
	if (f & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES))
		return -EPROTO;
	*no_zeroes = !!(f & NBD_FLAG_C_NO_ZEROES);
	return 0;
}

int nbds_parse_option(const uint8_t buf[NBDS_OPT_HDR_LEN], uint32_t *option, uint32_t *len)
{
	if (get_be64(buf) != NBD_NEW_VERSION)
		return -EPROTO;
	*option = get_be32(buf + 8);
	*len = get_be32(buf + 12);
	return *len > NBDS_MAX_OPTLEN ? -E2BIG : 0;
}

int nbds_valid_name(const char *name)
{
	size_t n = strlen(name);
	return n > 0 && n <= 255 && !strchr(name, '/') && strcmp(name, ".") != 0 &&
	       strcmp(name, "..") != 0;
}

/* An option reply header and its data. */
static int put_reply(struct nbds_out *out, uint32_t option, uint32_t reply, const void *data,
		     uint32_t len)
{
	struct nbd_fixed_new_option_reply h = {
		.magic = htobe64(NBD_REP_MAGIC),
		.option = htobe32(option),
		.reply = htobe32(reply),
		.replylen = htobe32(len),
	};
	int rc = nbds_out_put(out, &h, sizeof(h));
	return rc < 0 ? rc : nbds_out_put(out, data, len);
}

/* An error reply with a message for humans. */
static int put_error(struct nbds_out *out, uint32_t option, uint32_t reply, const char *msg)
{
	return put_reply(out, option, reply, msg, (uint32_t)strlen(msg));
}

/* Copy a wire string (not NUL-terminated, maybe with NULs) to a C string.
 * 0, or -EINVAL if it holds a NUL. */
static int copy_name(char name[NBD_MAX_STRING + 1], const uint8_t *p, uint32_t n)
{
	if (n > NBD_MAX_STRING || memchr(p, 0, n))
		return -EINVAL;
	memcpy(name, p, n);
	name[n] = '\0';
	return 0;
}

/* The NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 count of
 * information requests, u16 each.  0 or -EINVAL when inconsistent. */
static int parse_info_request(const uint8_t *data, uint32_t len,
			      char name[NBD_MAX_STRING + 1])
{
	if (len < 6)
		return -EINVAL;
	uint32_t n = get_be32(data);
	if (n > len - 6)
		return -EINVAL;
	uint16_t nreq = get_be16(data + 4 + n);
	if ((uint64_t)len != 4 + (uint64_t)n + 2 + 2 * (uint64_t)nreq)
		return -EINVAL;
	return copy_name(name, data + 4, n);
}

uint16_t nbds_eflags(const struct nbds_session *ss)
{
	return (uint16_t)(NBDS_EFLAGS | (ss->structured ? NBD_FLAG_SEND_DF : 0));
}

static int put_info(struct nbds_out *out, uint32_t option, uint64_t size,
		    const struct nbds_session *ss)
{
	struct nbd_fixed_new_option_reply_info_export e = {
		.info = htobe16(NBD_INFO_EXPORT),
		.exportsize = htobe64(size),
		.eflags = htobe16(nbds_eflags(ss)),
	};
	struct nbd_fixed_new_option_reply_info_block_size b = {
		.info = htobe16(NBD_INFO_BLOCK_SIZE),
		.minimum = htobe32(NBDS_MIN_BLOCK),
		.preferred = htobe32(NBDS_PREF_BLOCK),
		.maximum = htobe32(NBDS_MAX_PAYLOAD),
	};
	int rc = put_reply(out, option, NBD_REP_INFO, &e, sizeof(e));
	if (rc == 0)
		rc = put_reply(out, option, NBD_REP_INFO, &b, sizeof(b));
	if (rc == 0)
		rc = put_reply(out, option, NBD_REP_ACK, NULL, 0);
	return rc;
}

/* The error reply for a failed export lookup. */
static int put_lookup_error(struct nbds_out *out, uint32_t option, int rc)
{
	if (rc == -ENOENT)
		return put_error(out, option, NBD_REP_ERR_UNKNOWN, "no such export in .nbd/");
	if (rc == -EACCES || rc == -EPERM)
		return put_error(out, option, NBD_REP_ERR_POLICY, "export not accessible");
	if (rc == -ESHUTDOWN)
		return put_error(out, option, NBD_REP_ERR_SHUTDOWN, "server shutting down");
	return put_error(out, option, NBD_REP_ERR_PLATFORM, "export lookup failed");
}

/* Entering transmission with export name: the contexts chosen for another
 * export do not carry over. */
static void select_export(struct nbds_session *ss, const char *name)
{
	if (strcmp(ss->meta_export, name) != 0)
		ss->base_alloc = 0;
}

static int opt_info_go(uint32_t option, const uint8_t *data, uint32_t len,
		       struct nbds_session *ss, const struct nbds_exports *ex,
		       struct nbds_out *out, enum nbds_next *next)
{
	char name[NBD_MAX_STRING + 1];
	if (parse_info_request(data, len, name) < 0)
		return put_error(out, option, NBD_REP_ERR_INVALID, "malformed request");
	if (!nbds_valid_name(name))
		return put_lookup_error(out, option, -ENOENT);
	uint64_t size;
	int rc = ex->lookup(ex->arg, name, option == NBD_OPT_GO, &size);
	if (rc < 0)
		return put_lookup_error(out, option, rc);
	rc = put_info(out, option, size, ss);
	if (rc == 0 && option == NBD_OPT_GO) {
		select_export(ss, name);
		*next = NBDS_NEXT_TRANSMIT;
	}
	return rc;
}

/* NBD_OPT_EXPORT_NAME: no error reply exists; a failure closes. */
static int opt_export_name(const uint8_t *data, uint32_t len, struct nbds_session *ss,
			   const struct nbds_exports *ex, struct nbds_out *out,
			   enum nbds_next *next)
{
	char name[NBD_MAX_STRING + 1];
	uint64_t size;
	*next = NBDS_NEXT_CLOSE;
	if (copy_name(name, data, len) < 0 || !nbds_valid_name(name) ||
	    ex->lookup(ex->arg, name, 1, &size) < 0)
		return 0;
	struct nbd_export_name_reply r = {
		.exportsize = htobe64(size),
		.eflags = htobe16(nbds_eflags(ss)),
	};
	static const uint8_t zeroes[NBD_EXPORT_NAME_ZEROES];
	int rc = nbds_out_put(out, &r, sizeof(r));
	if (rc == 0 && !ss->no_zeroes)
		rc = nbds_out_put(out, zeroes, sizeof(zeroes));
	if (rc == 0) {
		select_export(ss, name);
		*next = NBDS_NEXT_TRANSMIT;
	}
	return rc;
}

static int emit_server(void *ctx, const char *name)
{
	uint8_t buf[4 + NBD_MAX_STRING];
	size_t n = strlen(name);
	if (n > NBD_MAX_STRING)
		return 0;
	uint32_t be = htobe32((uint32_t)n);
	memcpy(buf, &be, 4);
	memcpy(buf + 4, name, n);
	return put_reply(ctx, NBD_OPT_LIST, NBD_REP_SERVER, buf, (uint32_t)(4 + n));
}

static int opt_list(uint32_t len, const struct nbds_exports *ex, struct nbds_out *out)
{
	if (len != 0)
		return put_error(out, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "LIST takes no data");
	size_t start = out->len;
	int rc = ex->list(ex->arg, emit_server, out);
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0) {
		out->len = start;
		return put_error(out, NBD_OPT_LIST, NBD_REP_ERR_PLATFORM, "cannot list .nbd/");
	}
	return put_reply(out, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static int opt_structured_reply(uint32_t len, struct nbds_session *ss, struct nbds_out *out)
{
	if (len != 0)
		return put_error(out, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
				 "STRUCTURED_REPLY takes no data");
	ss->structured = 1;
	return put_reply(out, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NULL, 0);
}

/* Does a LIST (list set) or SET query name base:allocation?  LIST also takes
 * the bare namespace "base:". */
static int query_matches(const uint8_t *q, uint32_t n, int list)
{
	static const char ctx[] = NBDS_BASE_ALLOCATION;
	if (n == sizeof(ctx) - 1 && memcmp(q, ctx, n) == 0)
		return 1;
	return list && n == 5 && memcmp(q, ctx, 5) == 0;
}

/* The NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data: u32 name
 * length, export name, u32 query count, then u32 length and string for
 * each.  0 with *match set when base:allocation is asked for (no query
 * asks for everything when listing), or -EINVAL when inconsistent. */
static int parse_meta_request(const uint8_t *data, uint32_t len, int list,
			      char name[NBD_MAX_STRING + 1], int *match)
{
	if (len < 8)
		return -EINVAL;
	uint32_t n = get_be32(data);
	if (n > len - 8 || copy_name(name, data + 4, n) < 0)
		return -EINVAL;
	uint32_t nq = get_be32(data + 4 + n);
	uint32_t pos = 8 + n;
	*match = list && nq == 0;
	for (uint32_t i = 0; i < nq; i++) {
		if (len - pos < 4)
			return -EINVAL;
		uint32_t ql = get_be32(data + pos);
		pos += 4;
		if (ql > len - pos || ql > NBD_MAX_STRING || memchr(data + pos, 0, ql))
			return -EINVAL;
		if (query_matches(data + pos, ql, list))
			*match = 1;
		pos += ql;
	}
	return pos == len ? 0 : -EINVAL;
}

static int opt_meta_context(uint32_t option, const uint8_t *data, uint32_t len,
			    struct nbds_session *ss, const struct nbds_exports *ex,
			    struct nbds_out *out)
{
	int list = option == NBD_OPT_LIST_META_CONTEXT;
	char name[NBD_MAX_STRING + 1];
	int match;
	uint64_t size;

	if (!list) /* a failed SET leaves nothing selected */
		ss->base_alloc = 0;
	if (!ss->structured)
		return put_error(out, option, NBD_REP_ERR_INVALID,
				 "negotiate structured replies first");
	if (parse_meta_request(data, len, list, name, &match) < 0)
		return put_error(out, option, NBD_REP_ERR_INVALID, "malformed request");
	if (!nbds_valid_name(name))
		return put_lookup_error(out, option, -ENOENT);
	int rc = ex->lookup(ex->arg, name, 0, &size);
	if (rc < 0)
		return put_lookup_error(out, option, rc);
	if (match) {
		/* The id of a listed context is reserved: zero. */
		uint32_t id = htobe32(list ? 0 : NBDS_BASE_ALLOCATION_ID);
		uint8_t buf[4 + sizeof(NBDS_BASE_ALLOCATION) - 1];
		memcpy(buf, &id, 4);
		memcpy(buf + 4, NBDS_BASE_ALLOCATION, sizeof(buf) - 4);
		rc = put_reply(out, option, NBD_REP_META_CONTEXT, buf, sizeof(buf));
		if (rc < 0)
			return rc;
	}
	if (!list) {
		ss->base_alloc = match;
		strcpy(ss->meta_export, name);
	}
	return put_reply(out, option, NBD_REP_ACK, NULL, 0);
}

int nbds_handle_option(uint32_t option, const uint8_t *data, uint32_t len,
		       struct nbds_session *ss, const struct nbds_exports *ex,
		       struct nbds_out *out, enum nbds_next *next)
{
	*next = NBDS_NEXT_OPTION;
	switch (option) {
	case NBD_OPT_EXPORT_NAME:
		return opt_export_name(data, len, ss, ex, out, next);
	case NBD_OPT_ABORT:
		*next = NBDS_NEXT_CLOSE;
		return put_reply(out, option, NBD_REP_ACK, NULL, 0);
	case NBD_OPT_LIST:
		return opt_list(len, ex, out);
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		return opt_info_go(option, data, len, ss, ex, out, next);
	case NBD_OPT_STRUCTURED_REPLY:
		return opt_structured_reply(len, ss, out);
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		return opt_meta_context(option, data, len, ss, ex, out);
	default:
		return put_error(out, option, NBD_REP_ERR_UNSUP, "option not supported");
	}
}

int nbds_parse_request(const uint8_t buf[NBDS_REQ_LEN], struct nbds_req *r)
{
	if (get_be32(buf) != NBD_REQUEST_MAGIC)
		return -EPROTO;
	r->flags = get_be16(buf + 4);
	r->type = get_be16(buf + 6);
	r->cookie = get_be64(buf + 8);
	r->offset = get_be64(buf + 16);
	r->count = get_be32(buf + 24);
	return 0;
}

/* The command flags each command accepts in this session, or -1 when the
 * command itself is not available. */
static int allowed_flags(uint16_t type, const struct nbds_session *ss)
{
	switch (type) {
	case NBD_CMD_READ:
		return NBD_CMD_FLAG_FUA | (ss->structured ? NBD_CMD_FLAG_DF : 0);
	case NBD_CMD_BLOCK_STATUS:
		if (!ss->structured || !ss->base_alloc)
			return -1;
		return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_REQ_ONE;
	case NBD_CMD_WRITE:
	case NBD_CMD_FLUSH:
	case NBD_CMD_TRIM:
	case NBD_CMD_CACHE:
		return NBD_CMD_FLAG_FUA;
	case NBD_CMD_WRITE_ZEROES:
		return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
	case NBD_CMD_DISC:
		return 0;
	default:
		return -1;
	}
}

uint32_t nbds_check_request(const struct nbds_req *r, uint64_t size,
			    const struct nbds_session *ss, int *close)
{
	*close = r->type == NBD_CMD_WRITE && r->count > NBDS_MAX_PAYLOAD;
	int allowed = allowed_flags(r->type, ss);
	if (allowed < 0 || (r->flags & ~allowed))
		return NBD_EINVAL;
	switch (r->type) {
	case NBD_CMD_DISC:
		return 0;
	case NBD_CMD_FLUSH:
		return r->offset || r->count ? NBD_EINVAL : 0;
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
		if (r->count > NBDS_MAX_PAYLOAD)
			return NBD_EINVAL;
		break;
	default:
		break;
	}
	if (r->count == 0)
		return NBD_EINVAL;
	if (r->offset > size || r->count > size - r->offset)
		return r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC
										    : NBD_EINVAL;
	return 0;
}

void nbds_simple_reply(uint8_t buf[NBDS_REPLY_LEN], uint32_t error, uint64_t cookie)
{
	struct nbd_simple_reply r = {
		.magic = htobe32(NBD_SIMPLE_REPLY_MAGIC),
		.error = htobe32(error),
		.cookie = htobe64(cookie),
	};
	memcpy(buf, &r, sizeof(r));
}

void nbds_chunk_header(uint8_t buf[NBDS_CHUNK_LEN], uint16_t flags, uint16_t type,
		       uint64_t cookie, uint32_t length)
{
	struct nbd_structured_reply h = {
		.magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC),
		.flags = htobe16(flags),
		.type = htobe16(type),
		.cookie = htobe64(cookie),
		.length = htobe32(length),
	};
	memcpy(buf, &h, sizeof(h));
}

size_t nbds_error_chunk(uint8_t buf[NBDS_ERROR_CHUNK_MAX], uint64_t cookie, uint32_t error,
			const char *msg)
{
	size_t n = strnlen(msg, NBDS_ERROR_MSG_MAX);
	struct nbd_structured_reply_error e = {
		.error = htobe32(error),
		.len = htobe16((uint16_t)n),
	};
	nbds_chunk_header(buf, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, cookie,
			  (uint32_t)(sizeof(e) + n));
	memcpy(buf + NBDS_CHUNK_LEN, &e, sizeof(e));
	memcpy(buf + NBDS_CHUNK_LEN + sizeof(e), msg, n);
	return NBDS_CHUNK_LEN + sizeof(e) + n;
}

int nbds_extents_add(struct nbds_extents *x, uint64_t off, uint32_t len, int hole)
{
	struct nbds_extent *last = x->n ? &x->e[x->n - 1] : NULL;
	if (last && last->hole == hole && last->off + last->len == off &&
	    len <= UINT32_MAX - last->len) {
		last->len += len;
		return 0;
	}
	if (x->n == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 16;
		struct nbds_extent *e = realloc(x->e, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		x->e = e;
		x->cap = cap;
	}
	x->e[x->n++] = (struct nbds_extent){.off = off, .len = len, .hole = hole};
	return 0;
}

void nbds_extents_free(struct nbds_extents *x)
{
	free(x->e);
	x->e = NULL;
	x->n = x->cap = 0;
}

size_t nbds_content_header(uint8_t buf[NBDS_CONTENT_HDR_MAX], uint64_t cookie,
			   const struct nbds_extent *e, int last)
{
	uint16_t flags = last ? NBD_REPLY_FLAG_DONE : 0;
	if (e->hole) {
		struct nbd_structured_reply_offset_hole h = {
			.offset = htobe64(e->off),
			.length = htobe32(e->len),
		};
		nbds_chunk_header(buf, flags, NBD_REPLY_TYPE_OFFSET_HOLE, cookie, sizeof(h));
		memcpy(buf + NBDS_CHUNK_LEN, &h, sizeof(h));
		return NBDS_CHUNK_LEN + sizeof(h);
	}
	struct nbd_structured_reply_offset_data d = {.offset = htobe64(e->off)};
	nbds_chunk_header(buf, flags, NBD_REPLY_TYPE_OFFSET_DATA, cookie,
			  (uint32_t)(sizeof(d) + e->len));
	memcpy(buf + NBDS_CHUNK_LEN, &d, sizeof(d));
	return NBDS_CHUNK_LEN + sizeof(d);
}

int nbds_put_block_status(struct nbds_out *out, uint64_t cookie, const struct nbds_extent *e,
			  size_t n)
{
	uint8_t hdr[NBDS_CHUNK_LEN];
	uint32_t id = htobe32(NBDS_BASE_ALLOCATION_ID);
	size_t len = 4 + n * sizeof(struct nbd_block_descriptor);
	if (n == 0 || len > UINT32_MAX)
		return -EINVAL;
	nbds_chunk_header(hdr, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS, cookie,
			  (uint32_t)len);
	int rc = nbds_out_put(out, hdr, sizeof(hdr));
	if (rc == 0)
		rc = nbds_out_put(out, &id, sizeof(id));
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct nbd_block_descriptor d = {
			.length = htobe32(e[i].len),
			.status_flags = htobe32(e[i].hole ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0),
		};
		rc = nbds_out_put(out, &d, sizeof(d));
	}
	return rc;
}

uint32_t nbds_errno(int err)
{
	switch (err) {
	case 0:
		return NBD_SUCCESS;
	case EPERM:
	case EACCES:
	case EROFS:
		return NBD_EPERM;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP:
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}
