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
/* A structured reply chunk header; the longest header of a READ content
 * chunk (an OFFSET_HOLE chunk is all header). */
#define NBDS_CHUNK_LEN 20
#define NBDS_CONTENT_HDR_MAX (NBDS_CHUNK_LEN + 12)

/* The one metadata context, and its id in NBD_OPT_SET_META_CONTEXT replies
 * and NBD_REPLY_TYPE_BLOCK_STATUS chunks. */
#define NBDS_BASE_ALLOCATION "base:allocation"
#define NBDS_BASE_ALLOCATION_ID 1u

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

/* What the option phase negotiated; zeroed at the start of a connection. */
struct nbds_session {
	int no_zeroes;  /* the client's NBD_FLAG_C_NO_ZEROES */
	int structured; /* NBD_OPT_STRUCTURED_REPLY acknowledged */
	int base_alloc; /* base:allocation selected (NBD_OPT_SET_META_CONTEXT) */
	/* The export the last NBD_OPT_SET_META_CONTEXT named: selecting another
	 * one drops the contexts. */
	char meta_export[NBD_MAX_STRING + 1];
};

/* The transmission flags of an export for this session. */
uint16_t nbds_eflags(const struct nbds_session *ss);

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

/* Handle one option with its data: append the replies to out, update the
 * session and say what comes next in *next.  0, or -ENOMEM (close the
 * connection). */
int nbds_handle_option(uint32_t option, const uint8_t *data, uint32_t len,
		       struct nbds_session *ss, const struct nbds_exports *ex,
		       struct nbds_out *out, enum nbds_next *next);

/* A transmission request, host byte order. */
struct nbds_req {
	uint16_t flags, type;
	uint64_t cookie, offset;
	uint32_t count;
};

/* Parse a request header.  0, or -EPROTO on a bad magic (close). */
int nbds_parse_request(const uint8_t buf[NBDS_REQ_LEN], struct nbds_req *r);

/* Check a request against the export's size and what the session
 * negotiated (NBD_CMD_FLAG_DF needs structured replies, BLOCK_STATUS a
 * metadata context).  Returns 0 or the NBD error to reply with; sets *close
 * when the connection cannot go on (a WRITE whose payload is too large to
 * read).  A WRITE that gets an error reply still has its payload read
 * first. */
uint32_t nbds_check_request(const struct nbds_req *r, uint64_t size,
			    const struct nbds_session *ss, int *close);

/* A simple reply header. */
void nbds_simple_reply(uint8_t buf[NBDS_REPLY_LEN], uint32_t error, uint64_t cookie);

/* A structured reply chunk header (length: the payload's). */
void nbds_chunk_header(uint8_t buf[NBDS_CHUNK_LEN], uint16_t flags, uint16_t type,
		       uint64_t cookie, uint32_t length);

/* A final NBD_REPLY_TYPE_ERROR chunk (error not zero) with msg, cut to
 * NBDS_ERROR_MSG_MAX bytes.  Returns the chunk's length. */
#define NBDS_ERROR_MSG_MAX 128
#define NBDS_ERROR_CHUNK_MAX (NBDS_CHUNK_LEN + 6 + NBDS_ERROR_MSG_MAX)
size_t nbds_error_chunk(uint8_t buf[NBDS_ERROR_CHUNK_MAX], uint64_t cookie, uint32_t error,
			const char *msg);

/* A range of the export that holds data or is a hole (reads as zeros). */
struct nbds_extent {
	uint64_t off;
	uint32_t len; /* not zero */
	int hole;
};

/* A growing list of extents in offset order. */
struct nbds_extents {
	struct nbds_extent *e;
	size_t n, cap;
};
/* Append [off, off + len) (len > 0); merged into the last extent when it
 * ends at off with the same kind and the sum fits in 32 bits.  0 or
 * -ENOMEM. */
int nbds_extents_add(struct nbds_extents *x, uint64_t off, uint32_t len, int hole);
void nbds_extents_free(struct nbds_extents *x);

/* The header of the READ content chunk for e: NBD_REPLY_TYPE_OFFSET_HOLE
 * (complete) or NBD_REPLY_TYPE_OFFSET_DATA (e->len bytes of data follow).
 * last sets NBD_REPLY_FLAG_DONE.  Returns the header's length. */
size_t nbds_content_header(uint8_t buf[NBDS_CONTENT_HDR_MAX], uint64_t cookie,
			   const struct nbds_extent *e, int last);

/* Append the final NBD_REPLY_TYPE_BLOCK_STATUS chunk of base:allocation for
 * n extents: holes are NBD_STATE_HOLE | NBD_STATE_ZERO, data 0.  0, -ENOMEM,
 * or -EINVAL when n is 0 or the chunk would not fit its 32-bit length. */
int nbds_put_block_status(struct nbds_out *out, uint64_t cookie, const struct nbds_extent *e,
			  size_t n);

/* The NBD error for a positive errno. */
uint32_t nbds_errno(int err);

#endif
