/* fuzz_nbdproto.c: libFuzzer target for the NBD server's protocol logic
 * (src/nbd/nbdproto.c).  The input is a client's byte stream: client flags,
 * then options (header and data) until one selects an export, then request
 * headers.  Exports are faked; every reply the module builds is checked to
 * be well framed.  Built and run by tests/t-fuzz-nbd.sh when clang is there. */
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct nbds_exports ex = {fake_lookup, fake_list, NULL};
	int no_zeroes;
	if (size < 4 || nbds_parse_client_flags(data, &no_zeroes) < 0)
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
		if (nbds_handle_option(option, opt, len, no_zeroes, &ex, &out, &next) == 0 &&
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
		uint32_t err = nbds_check_request(&r, 1 << 20, &close_now);
		if (!err && r.type != NBD_CMD_DISC && r.type != NBD_CMD_FLUSH &&
		    (r.count == 0 || r.offset + r.count > (1 << 20)))
			abort(); /* an accepted request must lie inside the export */
		data += NBDS_REQ_LEN;
		size -= NBDS_REQ_LEN;
	}
	return 0;
}
