/* fuzz_nbdproto.c: libFuzzer target for the NBD server's protocol logic
 * (src/nbd/nbdproto.c).  The input is a client's byte stream: client flags,
 * then options (header and data) until one selects an export, then request
 * headers.  Exports are faked; every reply the module builds is checked to
 * be well framed, and each accepted READ or BLOCK_STATUS gets a structured
 * reply built over extents cut from the request's cookie, which is checked
 * too.  Built and run by tests/t-fuzz-nbd.sh when clang is there. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/nbdproto.h"

static int fake_lookup(void *arg, const char *name, int select, uint64_t *size)
{
	if (!nbds_valid_name(name))
		abort(); /* the module must never pass an invalid name on */
	if (name[0] == 'x')
		return -5;
	*size = strlen(name) * 4096;
	return name[0] == 'n' ? -2 : 0;
}

static int fake_list(void *arg, int (*emit)(void *ctx, const char *name), void *ctx)
{
	int rc = emit(ctx, "disk");
	return rc < 0 ? rc : emit(ctx, "other");
}

/* Every option reply starts with the reply magic; walk them all. */
static void check_replies(const struct nbds_out *o, enum nbds_next next)
{
	size_t pos = 0;
	if (next == NBDS_NEXT_TRANSMIT && o->len == 10)
		return; /* NBD_OPT_EXPORT_NAME's short reply */
	while (pos < o->len) {
		if (o->len - pos < 20 || o->buf[pos] != 0x00 || o->buf[pos + 1] != 0x03)
			abort();
		uint32_t len = (uint32_t)o->buf[pos + 16] << 24 | (uint32_t)o->buf[pos + 17] << 16 |
			       (uint32_t)o->buf[pos + 18] << 8 | o->buf[pos + 19];
		pos += 20 + (size_t)len;
	}
	if (pos != o->len)
		abort();
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Cut [r->offset, + r->count) into extents at 64 KiB boundaries, a hole
 * where the cookie's bit (block index mod 64) is set, and encode the
 * replies a structured READ and a BLOCK_STATUS would get. */
static void check_structured(const struct nbds_req *r)
{
	struct nbds_extents x = {0};
	uint64_t off = r->offset, end = r->offset + r->count;
	while (off < end) {
		uint64_t next = ((off >> 16) + 1) << 16;
		uint32_t len = (uint32_t)((next < end ? next : end) - off);
		if (nbds_extents_add(&x, off, len, (int)(r->cookie >> ((off >> 16) & 63) & 1)) < 0)
			abort();
		off += len;
	}
	uint64_t sum = 0;
	for (size_t i = 0; i < x.n; i++) {
		uint8_t h[NBDS_CONTENT_HDR_MAX];
		size_t hl = nbds_content_header(h, r->cookie, &x.e[i], i + 1 == x.n);
		if (x.e[i].len == 0 || x.e[i].off != r->offset + sum ||
		    (i > 0 && x.e[i].hole == x.e[i - 1].hole) ||
		    hl != (x.e[i].hole ? 32u : 28u) ||
		    get32(h + 16) != (x.e[i].hole ? 12u : 8u + x.e[i].len) ||
		    (h[5] & 1) != (i + 1 == x.n))
			abort();
		sum += x.e[i].len;
	}
	if (sum != r->count)
		abort();
	struct nbds_out out = {0};
	if (nbds_put_block_status(&out, r->cookie, x.e, x.n) < 0 || out.len != 24 + 8 * x.n ||
	    get32(out.buf + 16) != 4 + 8 * x.n)
		abort();
	nbds_out_free(&out);
	nbds_extents_free(&x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct nbds_exports ex = {fake_lookup, fake_list, NULL};
	struct nbds_session ss = {0};
	if (size < 4 || nbds_parse_client_flags(data, &ss.no_zeroes) < 0)
		return 0;
	data += 4;
	size -= 4;
	enum nbds_next next = NBDS_NEXT_OPTION;
	while (next == NBDS_NEXT_OPTION && size >= NBDS_OPT_HDR_LEN) {
		uint32_t option, len;
		if (nbds_parse_option(data, &option, &len) < 0)
			return 0;
		data += NBDS_OPT_HDR_LEN;
		size -= NBDS_OPT_HDR_LEN;
		if (len > size)
			return 0;
		/* A copy of exactly len bytes, so reads past the data are caught. */
		uint8_t *opt = malloc(len ? len : 1);
		if (!opt)
			return 0;
		memcpy(opt, data, len);
		struct nbds_out out = {0};
		if (nbds_handle_option(option, opt, len, &ss, &ex, &out, &next) == 0 &&
		    option != NBD_OPT_EXPORT_NAME)
			check_replies(&out, next);
		nbds_out_free(&out);
		free(opt);
		data += len;
		size -= len;
	}
	while (next == NBDS_NEXT_TRANSMIT && size >= NBDS_REQ_LEN) {
		struct nbds_req r;
		int close_now;
		if (nbds_parse_request(data, &r) < 0)
			return 0;
		uint32_t err = nbds_check_request(&r, 1 << 20, &ss, &close_now);
		if (!err && r.type != NBD_CMD_DISC && r.type != NBD_CMD_FLUSH &&
		    (r.count == 0 || r.offset + r.count > (1 << 20)))
			abort(); /* an accepted request must lie inside the export */
		/* Structured-only use needs what it depends on negotiated. */
		if (!err && (r.type == NBD_CMD_BLOCK_STATUS ? !ss.structured || !ss.base_alloc
							    : (r.flags & NBD_CMD_FLAG_DF) && !ss.structured))
			abort();
		if (!err && (r.type == NBD_CMD_READ || r.type == NBD_CMD_BLOCK_STATUS))
			check_structured(&r);
		data += NBDS_REQ_LEN;
		size -= NBDS_REQ_LEN;
	}
	return 0;
}
