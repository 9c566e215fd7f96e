/* nbdproto.h: the NBD protocol logic of the server as pure functions over
 * byte buffers, with no sockets and no fs/: the greeting, the client flags,
 * the option phase (each option in, its replies out, with the exports reached
 * through two callbacks), and the parsing and checking of transmission
 * requests.  The server (nbds.c) does the I/O around them; the unit tests
 * and the fuzz target drive them with bytes.
 *
 * Locking: none; the functions keep no state beyond their arguments.  The
 * callbacks of struct nbds_exports run on the caller's thread. */
#ifndef ZEROFS_NBDPROTO_H
#define ZEROFS_NBDPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "nbd/nbd-protocol.h"

/* Block sizes announced in NBD_INFO_BLOCK_SIZE; the maximum is also the
 * largest READ or WRITE payload accepted. */
#define NBDS_MIN_BLOCK 1u
#define NBDS_PREF_BLOCK 4096u
#define NBDS_MAX_PAYLOAD (32u << 20)
/* Longest option data read; a longer option closes the connection. */
#define NBDS_MAX_OPTLEN (NBD_MAX_STRING + 4 + 2 + 2 * 64)

/* Transmission flags of every export. */
#define NBDS_EFLAGS                                                                  \
	(NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |                   \
	 NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO |      \
	 NBD_FLAG_SEND_CACHE | NBD_FLAG_CAN_MULTI_CONN)

#define NBDS_GREETING_LEN 18
#define NBDS_OPT_HDR_LEN 16
#define NBDS_REQ_LEN 28
#define NBDS_REPLY_LEN 16

/* A growable output buffer: what the server must send next. */
struct nbds_out {
	uint8_t *buf;
	size_t len, cap;
};
/* Append len bytes.  0 or -ENOMEM. */
int nbds_out_put(struct nbds_out *o, const void *data, size_t len);
void nbds_out_free(struct nbds_out *o);

/* The exports, as the option phase sees them. */
struct nbds_exports {
	/* Look name up (a valid file name, NUL-terminated).  0 with *size set,
	 * -ENOENT if there is no such export, other -errno on failure.  With
	 * select set the export becomes the connection's (NBD_OPT_GO,
	 * NBD_OPT_EXPORT_NAME); otherwise it is only described. */
	int (*lookup)(void *arg, const char *name, int select, uint64_t *size);
	/* Call emit for every export name; 0 or -errno (emit's too). */
	int (*list)(void *arg, int (*emit)(void *ctx, const char *name), void *ctx);
	void *arg;
};

/* What the connection does after an option's replies are sent. */
enum nbds_next {
	NBDS_NEXT_OPTION,   /* read the next option */
	NBDS_NEXT_TRANSMIT, /* an export is selected: transmission phase */
	NBDS_NEXT_CLOSE,    /* close the connection */
};

/* The server's first 18 bytes: NBDMAGIC, IHAVEOPT, handshake flags. */
void nbds_greeting(uint8_t buf[NBDS_GREETING_LEN]);

/* The client's 32-bit flags.  0 with *no_zeroes set, or -EPROTO when a flag
 * is unknown (the protocol says: close the connection). */
int nbds_parse_client_flags(const uint8_t buf[4], int *no_zeroes);

/* An option header.  0 with *option and *len set; -EPROTO on a bad magic,
 * -E2BIG when the data is longer than NBDS_MAX_OPTLEN (close either way). */
int nbds_parse_option(const uint8_t buf[NBDS_OPT_HDR_LEN], uint32_t *option, uint32_t *len);

/* Is name usable as an export: a file name in .nbd/ (not empty, no '/', not
 * "." or "..", at most 255 bytes)? */
int nbds_valid_name(const char *name);

/* Handle one option with its data: append the replies to out and say what
 * comes next in *next.  no_zeroes: the client's NBD_FLAG_C_NO_ZEROES.
 * 0, or -ENOMEM (close the connection). */
int nbds_handle_option(uint32_t option, const uint8_t *data, uint32_t len, int no_zeroes,
		       const struct nbds_exports *ex, struct nbds_out *out, enum nbds_next *next);

/* A transmission request, host byte order. */
struct nbds_req {
	uint16_t flags, type;
	uint64_t cookie, offset;
	uint32_t count;
};

/* Parse a request header.  0, or -EPROTO on a bad magic (close). */
int nbds_parse_request(const uint8_t buf[NBDS_REQ_LEN], struct nbds_req *r);

/* Check a request against the export's size.  Returns 0 or the NBD error to
 * reply with; sets *close when the connection cannot go on (a WRITE whose
 * payload is too large to read).  A WRITE that gets an error reply still has
 * its payload read first. */
uint32_t nbds_check_request(const struct nbds_req *r, uint64_t size, int *close);

/* A simple reply header. */
void nbds_simple_reply(uint8_t buf[NBDS_REPLY_LEN], uint32_t error, uint64_t cookie);

/* The NBD error for a positive errno. */
uint32_t nbds_errno(int err);

#endif
