/* test_nbdproto.c: unit tests of the NBD protocol logic (src/nbd/nbdproto.c)
 * with known byte vectors: the greeting, client flags, option headers, every
 * option the server knows and some it does not, malformed option data,
 * structured replies and the base:allocation metadata context, request
 * parsing and checking, the encoding of simple and structured replies, and
 * the errno mapping. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "nbd/nbdproto.h"

/* A fake set of exports: "disk" (1 MiB) and "other" (4 KiB). */
static int selected;

static int fake_lookup(void *arg, const char *name, int select, uint64_t *size)
{
	if (strcmp(name, "disk") == 0)
		*size = 1 << 20;
	else if (strcmp(name, "other") == 0)
		*size = 4096;
	else if (strcmp(name, "broken") == 0)
		return -EIO;
	else
		return -ENOENT;
	selected += select;
	return 0;
}

static int fake_list(void *arg, int (*emit)(void *ctx, const char *name), void *ctx)
{
	int rc = emit(ctx, "disk");
	return rc < 0 ? rc : emit(ctx, "other");
}

static const struct nbds_exports ex = {fake_lookup, fake_list, NULL};
static struct nbds_out out;
/* The session of the option tests (NO_ZEROES set) and of the request
 * checks (nothing negotiated) unless a test changes them. */
static struct nbds_session ss, req_ss;

static void setup(void)
{
	selected = 0;
	memset(&out, 0, sizeof(out));
	memset(&ss, 0, sizeof(ss));
	memset(&req_ss, 0, sizeof(req_ss));
	ss.no_zeroes = 1;
}

static void teardown(void)
{
	nbds_out_free(&out);
}

TestSuite(nbdproto, .init = setup, .fini = teardown);

static const uint8_t rep_magic[8] = {0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Check the option reply at *pos (advancing it): option, type, length. */
static const uint8_t *expect_reply(size_t *pos, uint32_t option, uint32_t type, uint32_t len)
{
	cr_assert_geq(out.len, *pos + 20, "reply truncated at %zu", *pos);
	const uint8_t *p = out.buf + *pos;
	cr_assert_eq(memcmp(p, rep_magic, 8), 0);
	cr_assert_eq(be32(p + 8), option);
	cr_assert_eq(be32(p + 12), type, "reply type %#x, want %#x", be32(p + 12), type);
	cr_assert_eq(be32(p + 16), len);
	*pos += 20 + len;
	return p + 20;
}

Test(nbdproto, greeting)
{
	static const uint8_t want[NBDS_GREETING_LEN] = {
		'N', 'B', 'D', 'M', 'A', 'G', 'I', 'C', 'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T',
		0x00, 0x03, /* FIXED_NEWSTYLE | NO_ZEROES */
	};
	uint8_t g[NBDS_GREETING_LEN];
	nbds_greeting(g);
	cr_assert_eq(memcmp(g, want, sizeof(want)), 0);
}

Test(nbdproto, client_flags)
{
	int nz = -1;
	cr_assert_eq(nbds_parse_client_flags((const uint8_t[]){0, 0, 0, 3}, &nz), 0);
	cr_assert_eq(nz, 1);
	cr_assert_eq(nbds_parse_client_flags((const uint8_t[]){0, 0, 0, 1}, &nz), 0);
	cr_assert_eq(nz, 0);
	cr_assert_eq(nbds_parse_client_flags((const uint8_t[]){0, 0, 0, 0}, &nz), 0);
	cr_assert_eq(nbds_parse_client_flags((const uint8_t[]){0, 0, 0, 4}, &nz), -EPROTO);
	cr_assert_eq(nbds_parse_client_flags((const uint8_t[]){0x80, 0, 0, 1}, &nz), -EPROTO);
}

Test(nbdproto, option_header)
{
	uint8_t h[16] = {'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T', 0, 0, 0, 7, 0, 0, 0, 10};
	uint32_t opt, len;
	cr_assert_eq(nbds_parse_option(h, &opt, &len), 0);
	cr_assert_eq(opt, 7);
	cr_assert_eq(len, 10);
	h[0] = 'X';
	cr_assert_eq(nbds_parse_option(h, &opt, &len), -EPROTO);
	h[0] = 'I';
	h[12] = 0x7f; /* 2 GiB of option data */
	cr_assert_eq(nbds_parse_option(h, &opt, &len), -E2BIG);
}

Test(nbdproto, valid_names)
{
	cr_assert(nbds_valid_name("disk"));
	cr_assert(nbds_valid_name("disk.img"));
	cr_assert(!nbds_valid_name(""));
	cr_assert(!nbds_valid_name("."));
	cr_assert(!nbds_valid_name(".."));
	cr_assert(!nbds_valid_name("../etc/passwd"));
	cr_assert(!nbds_valid_name("a/b"));
	char longname[300];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	cr_assert(!nbds_valid_name(longname));
}

/* GO data for name with the given information requests. */
static size_t go_data(uint8_t *buf, const char *name, uint16_t nreq)
{
	size_t n = strlen(name), len = 0;
	buf[len++] = 0;
	buf[len++] = 0;
	buf[len++] = (uint8_t)(n >> 8);
	buf[len++] = (uint8_t)n;
	memcpy(buf + len, name, n);
	len += n;
	buf[len++] = (uint8_t)(nreq >> 8);
	buf[len++] = (uint8_t)nreq;
	for (uint16_t i = 0; i < nreq; i++) {
		buf[len++] = 0;
		buf[len++] = NBD_INFO_BLOCK_SIZE;
	}
	return len;
}

Test(nbdproto, go_known_export)
{
	uint8_t d[64];
	size_t len = go_data(d, "disk", 1);
	enum nbds_next next;
	cr_assert_eq(nbds_handle_option(NBD_OPT_GO, d, (uint32_t)len, &ss, &ex, &out, &next), 0);
	cr_assert_eq(next, NBDS_NEXT_TRANSMIT);
	cr_assert_eq(selected, 1);
	size_t pos = 0;
	const uint8_t *p = expect_reply(&pos, NBD_OPT_GO, NBD_REP_INFO, 12);
	static const uint8_t info_export[12] = {0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0x0d, 0x6d};
	cr_assert_eq(memcmp(p, info_export, 12), 0, "NBD_INFO_EXPORT: size 1 MiB, flags 0x0d6d");
	p = expect_reply(&pos, NBD_OPT_GO, NBD_REP_INFO, 14);
	static const uint8_t info_bs[14] = {0, 3, 0, 0, 0, 1, 0, 0, 0x10, 0, 0x02, 0, 0, 0};
	cr_assert_eq(memcmp(p, info_bs, 14), 0, "NBD_INFO_BLOCK_SIZE 1/4096/32M");
	expect_reply(&pos, NBD_OPT_GO, NBD_REP_ACK, 0);
	cr_assert_eq(pos, out.len);
}

Test(nbdproto, info_does_not_select)
{
	uint8_t d[64];
	size_t len = go_data(d, "other", 0);
	enum nbds_next next;
	cr_assert_eq(nbds_handle_option(NBD_OPT_INFO, d, (uint32_t)len, &ss, &ex, &out, &next), 0);
	cr_assert_eq(next, NBDS_NEXT_OPTION);
	cr_assert_eq(selected, 0);
	size_t pos = 0;
	const uint8_t *p = expect_reply(&pos, NBD_OPT_INFO, NBD_REP_INFO, 12);
	cr_assert_eq(p[8], 0x10); /* 4096 = 0x1000 */
	expect_reply(&pos, NBD_OPT_INFO, NBD_REP_INFO, 14);
	expect_reply(&pos, NBD_OPT_INFO, NBD_REP_ACK, 0);
}

Test(nbdproto, go_unknown_and_failing_exports)
{
	uint8_t d[64];
	enum nbds_next next;
	size_t pos = 0, len = go_data(d, "nothere", 0);
	cr_assert_eq(nbds_handle_option(NBD_OPT_GO, d, (uint32_t)len, &ss, &ex, &out, &next), 0);
	cr_assert_eq(next, NBDS_NEXT_OPTION);
	cr_assert_eq(be32(out.buf + 12), NBD_REP_ERR_UNKNOWN);
	pos = out.len;
	len = go_data(d, "../x", 0);
	cr_assert_eq(nbds_handle_option(NBD_OPT_GO, d, (uint32_t)len, &ss, &ex, &out, &next), 0);
	cr_assert_eq(be32(out.buf + pos + 12), NBD_REP_ERR_UNKNOWN);
	pos = out.len;
	len = go_data(d, "broken", 0);
	cr_assert_eq(nbds_handle_option(NBD_OPT_GO, d, (uint32_t)len, &ss, &ex, &out, &next), 0);
	cr_assert_eq(be32(out.buf + pos + 12), NBD_REP_ERR_PLATFORM);
	cr_assert_eq(selected, 0);
}

Test(nbdproto, go_malformed)
{
	enum nbds_next next;
	/* Name length beyond the data. */
	static const uint8_t bad_len[] = {0, 0, 0, 99, 'd', 'i', 's', 'k', 0, 0};
	/* Information request count beyond the data. */
	static const uint8_t bad_count[] = {0, 0, 0, 4, 'd', 'i', 's', 'k', 0, 5, 0, 3};
	/* Too short for the count. */
	static const uint8_t short_data[] = {0, 0, 0};
	/* A NUL inside the name. */
	static const uint8_t nul_name[] = {0, 0, 0, 4, 'd', 0, 's', 'k', 0, 0};
	const struct {
		const uint8_t *d;
		uint32_t len;
	} cases[] = {
		{bad_len, sizeof(bad_len)},
		{bad_count, sizeof(bad_count)},
		{short_data, sizeof(short_data)},
		{nul_name, sizeof(nul_name)},
		{NULL, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		nbds_out_free(&out);
		cr_assert_eq(nbds_handle_option(NBD_OPT_GO, cases[i].d, cases[i].len, &ss, &ex, &out,
						&next),
			     0);
		cr_assert_eq(next, NBDS_NEXT_OPTION, "case %zu", i);
		cr_assert_eq(be32(out.buf + 12), NBD_REP_ERR_INVALID, "case %zu", i);
	}
	cr_assert_eq(selected, 0);
}

Test(nbdproto, list)
{
	enum nbds_next next;
	cr_assert_eq(nbds_handle_option(NBD_OPT_LIST, NULL, 0, &ss, &ex, &out, &next), 0);
	cr_assert_eq(next, NBDS_NEXT_OPTION);
	size_t pos = 0;
	const uint8_t *p = expect_reply(&pos, NBD_OPT_LIST, NBD_REP_SERVER, 8);
	cr_assert_eq(memcmp(p, "\0\0\0\4disk", 8), 0);
	p = expect_reply(&pos, NBD_OPT_LIST, NBD_REP_SERVER, 9);
	cr_assert_eq(memcmp(p, "\0\0\0\5other", 9), 0);
	expect_reply(&pos, NBD_OPT_LIST, NBD_REP_ACK, 0);
	cr_assert_eq(pos, out.len);
	nbds_out_free(&out);
	cr_assert_eq(nbds_handle_option(NBD_OPT_LIST, (const uint8_t *)"x", 1, &ss, &ex, &out, &next),
		     0);
	cr_assert_eq(be32(out.buf + 12), NBD_REP_ERR_INVALID);
}

Test(nbdproto, export_name)
{
	enum nbds_next next;
	ss.no_zeroes = 0;
	cr_assert_eq(nbds_handle_option(NBD_OPT_EXPORT_NAME, (const uint8_t *)"disk", 4, &ss, &ex,
					&out, &next),
		     0);
	ss.no_zeroes = 1;
	cr_assert_eq(next, NBDS_NEXT_TRANSMIT);
	cr_assert_eq(out.len, 8 + 2 + 124, "zeroes without NO_ZEROES");
	static const uint8_t want[10] = {0, 0, 0, 0, 0, 0x10, 0, 0, 0x0d, 0x6d};
	cr_assert_eq(memcmp(out.buf, want, 10), 0);
	nbds_out_free(&out);
	cr_assert_eq(nbds_handle_option(NBD_OPT_EXPORT_NAME, (const uint8_t *)"disk", 4, &ss, &ex,
					&out, &next),
		     0);
	cr_assert_eq(out.len, 10, "no zeroes with NO_ZEROES");
	nbds_out_free(&out);
	/* No error reply exists for EXPORT_NAME: an unknown name closes. */
	cr_assert_eq(nbds_handle_option(NBD_OPT_EXPORT_NAME, (const uint8_t *)"nope", 4, &ss, &ex,
					&out, &next),
		     0);
	cr_assert_eq(next, NBDS_NEXT_CLOSE);
	cr_assert_eq(out.len, 0);
}

Test(nbdproto, abort_and_unknown_options)
{
	enum nbds_next next;
	cr_assert_eq(nbds_handle_option(NBD_OPT_ABORT, NULL, 0, &ss, &ex, &out, &next), 0);
	cr_assert_eq(next, NBDS_NEXT_CLOSE);
	size_t pos = 0;
	expect_reply(&pos, NBD_OPT_ABORT, NBD_REP_ACK, 0);
	const uint32_t unsup[] = {NBD_OPT_STARTTLS, NBD_OPT_EXTENDED_HEADERS, 4, 12345,
				  0xffffffff};
	for (size_t i = 0; i < sizeof(unsup) / sizeof(unsup[0]); i++) {
		nbds_out_free(&out);
		cr_assert_eq(nbds_handle_option(unsup[i], (const uint8_t *)"abc", 3, &ss, &ex, &out,
						&next),
			     0);
		cr_assert_eq(next, NBDS_NEXT_OPTION);
		cr_assert_eq(be32(out.buf + 8), unsup[i]);
		cr_assert_eq(be32(out.buf + 12), NBD_REP_ERR_UNSUP);
	}
}

/* A request header from its fields. */
static void mkreq(uint8_t b[NBDS_REQ_LEN], uint16_t flags, uint16_t type, uint64_t off,
		  uint32_t count)
{
	static const uint8_t head[4] = {0x25, 0x60, 0x95, 0x13};
	memcpy(b, head, 4);
	b[4] = (uint8_t)(flags >> 8);
	b[5] = (uint8_t)flags;
	b[6] = (uint8_t)(type >> 8);
	b[7] = (uint8_t)type;
	for (int i = 0; i < 8; i++) {
		b[8 + i] = (uint8_t)(0x1122334455667788ULL >> (56 - 8 * i));
		b[16 + i] = (uint8_t)(off >> (56 - 8 * i));
	}
	for (int i = 0; i < 4; i++)
		b[24 + i] = (uint8_t)(count >> (24 - 8 * i));
}

static uint32_t check(uint16_t flags, uint16_t type, uint64_t off, uint32_t count, int *close)
{
	uint8_t b[NBDS_REQ_LEN];
	struct nbds_req r;
	mkreq(b, flags, type, off, count);
	cr_assert_eq(nbds_parse_request(b, &r), 0);
	return nbds_check_request(&r, 1 << 20, &req_ss, close);
}

Test(nbdproto, request_parse)
{
	static const uint8_t b[NBDS_REQ_LEN] = {
		0x25, 0x60, 0x95, 0x13, 0x00, 0x01, 0x00, 0x01, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66,
		0x77, 0x88, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x02, 0x00,
	};
	struct nbds_req r;
	cr_assert_eq(nbds_parse_request(b, &r), 0);
	cr_assert_eq(r.flags, NBD_CMD_FLAG_FUA);
	cr_assert_eq(r.type, NBD_CMD_WRITE);
	cr_assert_eq(r.cookie, 0x1122334455667788ULL);
	cr_assert_eq(r.offset, 4096);
	cr_assert_eq(r.count, 512);
	uint8_t bad[NBDS_REQ_LEN];
	memcpy(bad, b, sizeof(bad));
	bad[0] = 0x67; /* a reply magic, not a request's */
	cr_assert_eq(nbds_parse_request(bad, &r), -EPROTO);
}

Test(nbdproto, request_checks)
{
	int cl;
	cr_assert_eq(check(0, NBD_CMD_READ, 0, 4096, &cl), 0);
	cr_assert_eq(cl, 0);
	cr_assert_eq(check(NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, (1 << 20) - 512, 512, &cl), 0);
	cr_assert_eq(check(0, NBD_CMD_FLUSH, 0, 0, &cl), 0);
	cr_assert_eq(check(0, NBD_CMD_TRIM, 0, 1 << 20, &cl), 0);
	cr_assert_eq(check(NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_WRITE_ZEROES, 0,
			   4096, &cl),
		     0);
	cr_assert_eq(check(0, NBD_CMD_CACHE, 0, 4096, &cl), 0);
	cr_assert_eq(check(0, NBD_CMD_DISC, 0, 0, &cl), 0);

	/* Past the end: reads and trims EINVAL, writes ENOSPC. */
	cr_assert_eq(check(0, NBD_CMD_READ, 1 << 20, 1, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_READ, UINT64_MAX - 10, 4096, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_TRIM, 4096, 1 << 20, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_CACHE, 1 << 21, 1, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_WRITE, (1 << 20) - 1, 2, &cl), NBD_ENOSPC);
	cr_assert_eq(cl, 0, "the payload is read, then the error sent");
	cr_assert_eq(check(0, NBD_CMD_WRITE_ZEROES, UINT64_MAX, 1, &cl), NBD_ENOSPC);

	/* Oversized: a read gets EINVAL, a write closes the connection. */
	cr_assert_eq(check(0, NBD_CMD_READ, 0, NBDS_MAX_PAYLOAD + 1, &cl), NBD_EINVAL);
	cr_assert_eq(cl, 0);
	check(0, NBD_CMD_WRITE, 0, NBDS_MAX_PAYLOAD + 1, &cl);
	cr_assert_eq(cl, 1);

	/* Zero lengths, unknown commands and flags, a flush with a range. */
	cr_assert_eq(check(0, NBD_CMD_READ, 0, 0, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_BLOCK_STATUS, 0, 512, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, 99, 0, 512, &cl), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE, 0, 512, &cl), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_TRIM, 0, 512, &cl), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, 512, &cl), NBD_EINVAL);
	cr_assert_eq(check(0x8000, NBD_CMD_READ, 0, 512, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_FLUSH, 0, 512, &cl), NBD_EINVAL);
}

Test(nbdproto, simple_reply)
{
	uint8_t b[NBDS_REPLY_LEN];
	nbds_simple_reply(b, NBD_ENOSPC, 0x0102030405060708ULL);
	static const uint8_t want[NBDS_REPLY_LEN] = {0x67, 0x44, 0x66, 0x98, 0, 0, 0, 28,
						     1,    2,    3,    4,    5, 6, 7, 8};
	cr_assert_eq(memcmp(b, want, sizeof(want)), 0);
}

Test(nbdproto, errno_mapping)
{
	cr_assert_eq(nbds_errno(0), NBD_SUCCESS);
	cr_assert_eq(nbds_errno(EPERM), NBD_EPERM);
	cr_assert_eq(nbds_errno(EROFS), NBD_EPERM);
	cr_assert_eq(nbds_errno(EIO), NBD_EIO);
	cr_assert_eq(nbds_errno(ENOMEM), NBD_ENOMEM);
	cr_assert_eq(nbds_errno(EINVAL), NBD_EINVAL);
	cr_assert_eq(nbds_errno(ENOSPC), NBD_ENOSPC);
	cr_assert_eq(nbds_errno(EFBIG), NBD_ENOSPC);
	cr_assert_eq(nbds_errno(EDQUOT), NBD_ENOSPC);
	cr_assert_eq(nbds_errno(EOVERFLOW), NBD_EOVERFLOW);
	cr_assert_eq(nbds_errno(EOPNOTSUPP), NBD_ENOTSUP);
	cr_assert_eq(nbds_errno(ESHUTDOWN), NBD_ESHUTDOWN);
	cr_assert_eq(nbds_errno(ENOENT), NBD_EIO);
	cr_assert_eq(nbds_errno(ESTALE), NBD_EIO);
}

/* ---- structured replies and metadata contexts ---- */

Test(nbdproto, structured_reply_option)
{
	enum nbds_next next;
	cr_assert_eq(nbds_handle_option(NBD_OPT_STRUCTURED_REPLY, NULL, 0, &ss, &ex, &out, &next),
		     0);
	cr_assert_eq(next, NBDS_NEXT_OPTION);
	cr_assert_eq(ss.structured, 1);
	static const uint8_t ack[20] = {0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, 0, 0,
					0,    8,    0,    0,    0,    1,    0,    0,    0, 0};
	cr_assert_eq(out.len, sizeof(ack));
	cr_assert_eq(memcmp(out.buf, ack, sizeof(ack)), 0);
	nbds_out_free(&out);
	/* The option takes no data. */
	struct nbds_session fresh = {0};
	cr_assert_eq(nbds_handle_option(NBD_OPT_STRUCTURED_REPLY, (const uint8_t *)"x", 1, &fresh,
					&ex, &out, &next),
		     0);
	cr_assert_eq(be32(out.buf + 12), NBD_REP_ERR_INVALID);
	cr_assert_eq(fresh.structured, 0);
}

Test(nbdproto, go_with_structured_replies_offers_df)
{
	uint8_t d[64];
	size_t len = go_data(d, "disk", 0);
	enum nbds_next next;
	ss.structured = 1;
	cr_assert_eq(nbds_handle_option(NBD_OPT_GO, d, (uint32_t)len, &ss, &ex, &out, &next), 0);
	size_t pos = 0;
	const uint8_t *p = expect_reply(&pos, NBD_OPT_GO, NBD_REP_INFO, 12);
	static const uint8_t info_export[12] = {0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0x0d, 0xed};
	cr_assert_eq(memcmp(p, info_export, 12), 0, "flags 0x0ded: SEND_DF added");
	nbds_out_free(&out);
	cr_assert_eq(nbds_handle_option(NBD_OPT_EXPORT_NAME, (const uint8_t *)"disk", 4, &ss, &ex,
					&out, &next),
		     0);
	cr_assert_eq(out.len, 10);
	cr_assert_eq(out.buf[8], 0x0d);
	cr_assert_eq(out.buf[9], 0xed);
}

/* LIST/SET_META_CONTEXT data for name with nq queries. */
static size_t meta_data(uint8_t *buf, const char *name, size_t nq, const char *const *q)
{
	size_t len = 0;
	const char *s = name;
	for (size_t i = 0; i <= nq; i++) {
		size_t n = strlen(s);
		uint32_t v = (uint32_t)n;
		for (int k = 0; k < 4; k++)
			buf[len++] = (uint8_t)(v >> (24 - 8 * k));
		memcpy(buf + len, s, n);
		len += n;
		if (i == 0)
			for (int k = 0; k < 4; k++)
				buf[len++] = (uint8_t)(nq >> (24 - 8 * k));
		if (i < nq)
			s = q[i];
	}
	return len;
}

Test(nbdproto, set_meta_context_known_answer)
{
	static const uint8_t req[31] = {0, 0, 0, 4, 'd', 'i', 's', 'k', 0,   0,   0,
					1, 0, 0, 0, 15,	 'b', 'a', 's', 'e', ':', 'a',
					'l', 'l', 'o', 'c', 'a', 't', 'i', 'o', 'n'};
	static const uint8_t want[59] = {
		0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9, 0,   0,   0,   10,  0,   0,   0,
		4,    0,    0,    0,    19,   0,    0,    0,    1,   'b', 'a', 's', 'e', ':', 'a',
		'l',  'l',  'o',  'c',  'a',  't',  'i',  'o',  'n', 0x00, 0x03, 0xe8, 0x89, 0x04,
		0x55, 0x65, 0xa9, 0,    0,    0,    10,   0,    0,   0,   1,   0,   0,   0,   0};
	uint8_t d[64];
	static const char *const q[] = {NBDS_BASE_ALLOCATION};
	cr_assert_eq(meta_data(d, "disk", 1, q), sizeof(req));
	cr_assert_eq(memcmp(d, req, sizeof(req)), 0, "meta_data builds the wire layout");
	enum nbds_next next;
	ss.structured = 1;
	cr_assert_eq(nbds_handle_option(NBD_OPT_SET_META_CONTEXT, req, sizeof(req), &ss, &ex, &out,
					&next),
		     0);
	cr_assert_eq(next, NBDS_NEXT_OPTION);
	cr_assert_eq(out.len, sizeof(want));
	cr_assert_eq(memcmp(out.buf, want, sizeof(want)), 0);
	cr_assert_eq(ss.base_alloc, 1);
	cr_assert_str_eq(ss.meta_export, "disk");
	cr_assert_eq(selected, 0, "SET_META_CONTEXT only looks the export up");
}

Test(nbdproto, meta_context_needs_structured_replies)
{
	uint8_t d[64];
	static const char *const q[] = {NBDS_BASE_ALLOCATION};
	size_t len = meta_data(d, "disk", 1, q);
	enum nbds_next next;
	const uint32_t opts[] = {NBD_OPT_SET_META_CONTEXT, NBD_OPT_LIST_META_CONTEXT};
	for (size_t i = 0; i < 2; i++) {
		nbds_out_free(&out);
		cr_assert_eq(nbds_handle_option(opts[i], d, (uint32_t)len, &ss, &ex, &out, &next),
			     0);
		cr_assert_eq(be32(out.buf + 12), NBD_REP_ERR_INVALID);
		cr_assert_eq(out.len, 20 + be32(out.buf + 16), "one error reply");
	}
	cr_assert_eq(ss.base_alloc, 0);
}

/* Run a LIST or SET and return how many META_CONTEXT replies came before the
 * final ACK (-1: the final reply was an error, its type in *err). */
static int meta_run(uint32_t option, size_t nq, const char *const *q, const char *name,
		    uint32_t *err)
{
	uint8_t d[256];
	size_t len = meta_data(d, name, nq, q);
	enum nbds_next next;
	nbds_out_free(&out);
	cr_assert_eq(nbds_handle_option(option, d, (uint32_t)len, &ss, &ex, &out, &next), 0);
	size_t pos = 0;
	int n = 0;
	for (;;) {
		cr_assert_geq(out.len, pos + 20);
		uint32_t type = be32(out.buf + pos + 12), rlen = be32(out.buf + pos + 16);
		if (type != NBD_REP_META_CONTEXT) {
			cr_assert_eq(pos + 20 + rlen, out.len, "the last reply ends the output");
			*err = type;
			return type == NBD_REP_ACK ? n : -1;
		}
		const uint8_t *p = out.buf + pos + 20;
		cr_assert_eq(rlen, 4 + strlen(NBDS_BASE_ALLOCATION));
		cr_assert_eq(memcmp(p + 4, NBDS_BASE_ALLOCATION, rlen - 4), 0);
		cr_assert_eq(be32(p), option == NBD_OPT_LIST_META_CONTEXT ? 0 : NBDS_BASE_ALLOCATION_ID);
		pos += 20 + rlen;
		n++;
	}
}

Test(nbdproto, meta_context_queries)
{
	uint32_t err;
	ss.structured = 1;
	static const char *const all[] = {"base:"}, *const other[] = {"x-foo:bar"},
				 *const two[] = {"x-foo:bar", NBDS_BASE_ALLOCATION},
				 *const exact[] = {NBDS_BASE_ALLOCATION};
	/* LIST: no query lists everything, a namespace lists its contexts. */
	cr_assert_eq(meta_run(NBD_OPT_LIST_META_CONTEXT, 0, NULL, "disk", &err), 1);
	cr_assert_eq(meta_run(NBD_OPT_LIST_META_CONTEXT, 1, all, "disk", &err), 1);
	cr_assert_eq(meta_run(NBD_OPT_LIST_META_CONTEXT, 1, other, "disk", &err), 0);
	cr_assert_eq(ss.base_alloc, 0, "LIST selects nothing");
	/* SET: only the full name selects; an unknown context is ignored. */
	cr_assert_eq(meta_run(NBD_OPT_SET_META_CONTEXT, 0, NULL, "disk", &err), 0);
	cr_assert_eq(ss.base_alloc, 0);
	cr_assert_eq(meta_run(NBD_OPT_SET_META_CONTEXT, 1, all, "disk", &err), 0);
	cr_assert_eq(ss.base_alloc, 0);
	cr_assert_eq(meta_run(NBD_OPT_SET_META_CONTEXT, 2, two, "disk", &err), 1);
	cr_assert_eq(ss.base_alloc, 1);
	/* A later SET replaces the selection. */
	cr_assert_eq(meta_run(NBD_OPT_SET_META_CONTEXT, 1, other, "disk", &err), 0);
	cr_assert_eq(ss.base_alloc, 0);
	/* Unknown or failing exports. */
	cr_assert_eq(meta_run(NBD_OPT_SET_META_CONTEXT, 1, exact, "nothere", &err), -1);
	cr_assert_eq(err, NBD_REP_ERR_UNKNOWN);
	cr_assert_eq(meta_run(NBD_OPT_LIST_META_CONTEXT, 1, exact, "../x", &err), -1);
	cr_assert_eq(err, NBD_REP_ERR_UNKNOWN);
	cr_assert_eq(meta_run(NBD_OPT_SET_META_CONTEXT, 1, exact, "broken", &err), -1);
	cr_assert_eq(err, NBD_REP_ERR_PLATFORM);
	cr_assert_eq(ss.base_alloc, 0);
}

Test(nbdproto, meta_context_malformed)
{
	enum nbds_next next;
	ss.structured = 1;
	/* Query count beyond the data. */
	static const uint8_t count[] = {0, 0, 0, 4, 'd', 'i', 's', 'k', 0, 0, 0, 2,
					0, 0, 0, 1, 'x'};
	/* Query length beyond the data. */
	static const uint8_t qlen[] = {0, 0, 0, 4, 'd', 'i', 's', 'k', 0, 0, 0, 1,
				       0, 0, 0, 9, 'b', 'a', 's', 'e'};
	/* Half a query length. */
	static const uint8_t half[] = {0, 0, 0, 4, 'd', 'i', 's', 'k', 0, 0, 0, 1, 0, 0};
	/* Trailing bytes after the queries. */
	static const uint8_t trail[] = {0, 0, 0, 4, 'd', 'i', 's', 'k', 0, 0, 0, 0, 'z'};
	/* A NUL in a query. */
	static const uint8_t nul[] = {0, 0, 0, 4, 'd', 'i', 's', 'k', 0, 0, 0, 1,
				      0, 0, 0, 2, 'b', 0};
	/* Name length beyond the data; no room for the query count. */
	static const uint8_t name[] = {0, 0, 0, 9, 'd', 'i', 's', 'k', 0, 0, 0, 0};
	static const uint8_t tiny[] = {0, 0, 0, 0, 0, 0, 0};
	const struct {
		const uint8_t *d;
		uint32_t len;
	} cases[] = {
		{count, sizeof(count)}, {qlen, sizeof(qlen)}, {half, sizeof(half)},
		{trail, sizeof(trail)}, {nul, sizeof(nul)},   {name, sizeof(name)},
		{tiny, sizeof(tiny)},	{NULL, 0},
	};
	const uint32_t opts[] = {NBD_OPT_SET_META_CONTEXT, NBD_OPT_LIST_META_CONTEXT};
	for (size_t o = 0; o < 2; o++)
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			ss.base_alloc = 1;
			nbds_out_free(&out);
			cr_assert_eq(nbds_handle_option(opts[o], cases[i].d, cases[i].len, &ss, &ex,
							&out, &next),
				     0);
			cr_assert_eq(next, NBDS_NEXT_OPTION);
			cr_assert_eq(be32(out.buf + 12), NBD_REP_ERR_INVALID, "option %u case %zu",
				     opts[o], i);
			if (opts[o] == NBD_OPT_SET_META_CONTEXT)
				cr_assert_eq(ss.base_alloc, 0, "a failed SET selects nothing");
		}
}

Test(nbdproto, contexts_follow_the_export)
{
	uint8_t d[64];
	enum nbds_next next;
	ss.structured = 1;
	ss.base_alloc = 1;
	strcpy(ss.meta_export, "disk");
	size_t len = go_data(d, "other", 0);
	cr_assert_eq(nbds_handle_option(NBD_OPT_INFO, d, (uint32_t)len, &ss, &ex, &out, &next), 0);
	cr_assert_eq(ss.base_alloc, 1, "INFO changes nothing");
	cr_assert_eq(nbds_handle_option(NBD_OPT_GO, d, (uint32_t)len, &ss, &ex, &out, &next), 0);
	cr_assert_eq(next, NBDS_NEXT_TRANSMIT);
	cr_assert_eq(ss.base_alloc, 0, "contexts were set for another export");
	ss.base_alloc = 1;
	len = go_data(d, "disk", 0);
	cr_assert_eq(nbds_handle_option(NBD_OPT_GO, d, (uint32_t)len, &ss, &ex, &out, &next), 0);
	cr_assert_eq(ss.base_alloc, 1);
	cr_assert_eq(nbds_handle_option(NBD_OPT_EXPORT_NAME, (const uint8_t *)"other", 5, &ss, &ex,
					&out, &next),
		     0);
	cr_assert_eq(ss.base_alloc, 0);
}

Test(nbdproto, request_checks_structured)
{
	int cl;
	/* Structured replies: DF on READ, nothing more. */
	req_ss.structured = 1;
	cr_assert_eq(check(NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, 512, &cl), 0);
	cr_assert_eq(check(NBD_CMD_FLAG_DF | NBD_CMD_FLAG_FUA, NBD_CMD_READ, 0, 512, &cl), 0);
	cr_assert_eq(check(NBD_CMD_FLAG_REQ_ONE, NBD_CMD_READ, 0, 512, &cl), NBD_EINVAL);
	cr_assert_eq(check(NBD_CMD_FLAG_DF, NBD_CMD_WRITE, 0, 512, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_BLOCK_STATUS, 0, 512, &cl), NBD_EINVAL,
		     "no context selected");
	/* With base:allocation. */
	req_ss.base_alloc = 1;
	cr_assert_eq(check(0, NBD_CMD_BLOCK_STATUS, 0, 1 << 20, &cl), 0);
	cr_assert_eq(check(NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 4096, 1, &cl), 0);
	cr_assert_eq(check(NBD_CMD_FLAG_FUA, NBD_CMD_BLOCK_STATUS, 0, 512, &cl), 0);
	cr_assert_eq(check(NBD_CMD_FLAG_DF, NBD_CMD_BLOCK_STATUS, 0, 512, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_BLOCK_STATUS, 0, 0, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_BLOCK_STATUS, 1 << 20, 1, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_BLOCK_STATUS, 0, UINT32_MAX, &cl), NBD_EINVAL);
	cr_assert_eq(check(0, NBD_CMD_BLOCK_STATUS, UINT64_MAX, 2, &cl), NBD_EINVAL);
	cr_assert_eq(cl, 0);
	/* A context without structured replies cannot happen, but is refused. */
	req_ss.structured = 0;
	cr_assert_eq(check(0, NBD_CMD_BLOCK_STATUS, 0, 512, &cl), NBD_EINVAL);
}

static const uint8_t cookie_bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
#define COOKIE 0x0102030405060708ULL

Test(nbdproto, chunk_header)
{
	uint8_t b[NBDS_CHUNK_LEN];
	nbds_chunk_header(b, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, COOKIE, 0);
	static const uint8_t want[NBDS_CHUNK_LEN] = {0x66, 0x8e, 0x33, 0xef, 0, 1, 0, 0, 1, 2,
						     3,	   4,	 5,    6,    7, 8, 0, 0, 0, 0};
	cr_assert_eq(memcmp(b, want, sizeof(want)), 0);
}

Test(nbdproto, content_headers)
{
	uint8_t b[NBDS_CONTENT_HDR_MAX];
	struct nbds_extent hole = {.off = 0x10000, .len = 0x20000, .hole = 1};
	cr_assert_eq(nbds_content_header(b, COOKIE, &hole, 1), 32);
	static const uint8_t want_hole[32] = {
		0x66, 0x8e, 0x33, 0xef, 0, 1, 0, 2, 1, 2, 3, 4, 5,    6, 7, 8,
		0,    0,    0,    12,   0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0};
	cr_assert_eq(memcmp(b, want_hole, sizeof(want_hole)), 0, "OFFSET_HOLE, DONE");
	struct nbds_extent data = {.off = 0x200, .len = 0x1000, .hole = 0};
	cr_assert_eq(nbds_content_header(b, COOKIE, &data, 0), 28);
	static const uint8_t want_data[28] = {0x66, 0x8e, 0x33, 0xef, 0, 0, 0, 1, 1, 2,
					      3,    4,	  5,    6,    7, 8, 0, 0, 0x10, 0x08,
					      0,    0,	  0,    0,    0, 0, 2, 0};
	cr_assert_eq(memcmp(b, want_data, sizeof(want_data)), 0, "OFFSET_DATA, length 8 + data");
}

Test(nbdproto, error_chunk)
{
	uint8_t b[NBDS_ERROR_CHUNK_MAX];
	cr_assert_eq(nbds_error_chunk(b, COOKIE, NBD_EINVAL, "bad"), 29);
	static const uint8_t want[29] = {0x66, 0x8e, 0x33, 0xef, 0, 1, 0x80, 1,   1,   2,
					 3,    4,    5,    6,    7, 8, 0,    0,   0,   9,
					 0,    0,    0,    22,   0, 3, 'b',  'a', 'd'};
	cr_assert_eq(memcmp(b, want, sizeof(want)), 0);
	char longmsg[300];
	memset(longmsg, 'm', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = 0;
	cr_assert_eq(nbds_error_chunk(b, COOKIE, NBD_EIO, longmsg), NBDS_ERROR_CHUNK_MAX);
	cr_assert_eq(be32(b + 16), 6 + NBDS_ERROR_MSG_MAX);
	cr_assert_eq(b[24], 0);
	cr_assert_eq(b[25], NBDS_ERROR_MSG_MAX);
}

Test(nbdproto, block_status_chunk)
{
	const struct nbds_extent e[] = {{0, 0x10000, 0}, {0x10000, 0x30000, 1}};
	cr_assert_eq(nbds_put_block_status(&out, COOKIE, e, 2), 0);
	static const uint8_t want[40] = {
		0x66, 0x8e, 0x33, 0xef, 0, 1, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 20,
		0,    0,    0,    1,    0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 3};
	cr_assert_eq(out.len, sizeof(want));
	cr_assert_eq(memcmp(out.buf, want, sizeof(want)), 0,
		     "ctx 1; 64 KiB data; 192 KiB HOLE|ZERO");
	cr_assert_eq(memcmp(out.buf + 8, cookie_bytes, 8), 0);
	cr_assert_eq(nbds_put_block_status(&out, COOKIE, e, 0), -EINVAL);
}

Test(nbdproto, extents_merge)
{
	struct nbds_extents x = {0};
	cr_assert_eq(nbds_extents_add(&x, 0, 100, 0), 0);
	cr_assert_eq(nbds_extents_add(&x, 100, 50, 0), 0);
	cr_assert_eq(x.n, 1, "contiguous, same kind: merged");
	cr_assert_eq(x.e[0].len, 150);
	cr_assert_eq(nbds_extents_add(&x, 150, 10, 1), 0);
	cr_assert_eq(nbds_extents_add(&x, 200, 5, 1), 0);
	cr_assert_eq(x.n, 3, "another kind, then a gap: not merged");
	cr_assert_eq(nbds_extents_add(&x, 205, UINT32_MAX - 2, 1), 0);
	cr_assert_eq(x.n, 4, "the sum would overflow 32 bits");
	for (int i = 0; i < 40; i++) /* grows past the first allocation */
		cr_assert_eq(nbds_extents_add(&x, 1ULL << 40 | (uint64_t)i * 2, 1, i & 1), 0);
	cr_assert_eq(x.n, 44);
	cr_assert_eq(x.e[43].off, 1ULL << 40 | 78);
	nbds_extents_free(&x);
	cr_assert_eq(x.n, 0);
	cr_assert_null(x.e);
}
