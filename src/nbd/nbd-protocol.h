/* nbd-protocol.h: the NBD wire protocol (fixed newstyle handshake and
 * transmission phase) as constants and on-the-wire layouts, written from the
 * protocol description (NetworkBlockDevice/nbd doc/proto.md).  Every field is
 * big-endian on the wire; the structs are packed so that sizeof() is the
 * wire size.  Standalone: no other project header is needed.
 *
 * Locking: none; declarations only. */
#ifndef ZEROFS_NBD_PROTOCOL_H
#define ZEROFS_NBD_PROTOCOL_H

#include <stdint.h>

/* Handshake: S: NBDMAGIC, IHAVEOPT, u16 handshake flags; C: u32 flags. */
#define NBD_MAGIC UINT64_C(0x4e42444d41474943)     /* "NBDMAGIC" */
#define NBD_NEW_VERSION UINT64_C(0x49484156454F5054) /* "IHAVEOPT" */
#define NBD_REP_MAGIC UINT64_C(0x0003e889045565a9)

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES (1u << 1)

struct nbd_new_handshake {
	uint64_t nbdmagic;
	uint64_t version; /* NBD_NEW_VERSION */
	uint16_t gflags;
} __attribute__((packed));

/* C: one option. */
struct nbd_new_option {
	uint64_t version; /* NBD_NEW_VERSION */
	uint32_t option;
	uint32_t optlen; /* bytes of data that follow */
} __attribute__((packed));

/* S: reply to every option but NBD_OPT_EXPORT_NAME. */
struct nbd_fixed_new_option_reply {
	uint64_t magic; /* NBD_REP_MAGIC */
	uint32_t option;
	uint32_t reply;
	uint32_t replylen;
} __attribute__((packed));

/* S: reply to NBD_OPT_EXPORT_NAME (followed by 124 zero bytes unless the
 * client set NBD_FLAG_C_NO_ZEROES). */
struct nbd_export_name_reply {
	uint64_t exportsize;
	uint16_t eflags;
} __attribute__((packed));
#define NBD_EXPORT_NAME_ZEROES 124

/* Options. */
#define NBD_OPT_EXPORT_NAME 1
#define NBD_OPT_ABORT 2
#define NBD_OPT_LIST 3
#define NBD_OPT_STARTTLS 5
#define NBD_OPT_INFO 6
#define NBD_OPT_GO 7
#define NBD_OPT_STRUCTURED_REPLY 8
#define NBD_OPT_LIST_META_CONTEXT 9
#define NBD_OPT_SET_META_CONTEXT 10
#define NBD_OPT_EXTENDED_HEADERS 11

/* Option reply types. */
#define NBD_REP_ERR(v) (UINT32_C(0x80000000) | (v))
#define NBD_REP_ACK 1
#define NBD_REP_SERVER 2
#define NBD_REP_INFO 3
#define NBD_REP_META_CONTEXT 4
#define NBD_REP_ERR_UNSUP NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG NBD_REP_ERR(9)

/* NBD_REP_INFO payloads, chosen by a u16 type. */
#define NBD_INFO_EXPORT 0
#define NBD_INFO_NAME 1
#define NBD_INFO_DESCRIPTION 2
#define NBD_INFO_BLOCK_SIZE 3

struct nbd_fixed_new_option_reply_info_export {
	uint16_t info; /* NBD_INFO_EXPORT */
	uint64_t exportsize;
	uint16_t eflags;
} __attribute__((packed));

struct nbd_fixed_new_option_reply_info_block_size {
	uint16_t info; /* NBD_INFO_BLOCK_SIZE */
	uint32_t minimum;
	uint32_t preferred;
	uint32_t maximum;
} __attribute__((packed));

/* Transmission flags (the u16 eflags). */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_ROTATIONAL (1u << 4)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_RESIZE (1u << 9)
#define NBD_FLAG_SEND_CACHE (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO (1u << 11)

/* Transmission: C: request (then the payload of a write). */
#define NBD_REQUEST_MAGIC UINT32_C(0x25609513)
struct nbd_request {
	uint32_t magic;
	uint16_t flags; /* NBD_CMD_FLAG_* */
	uint16_t type;  /* NBD_CMD_* */
	uint64_t cookie;
	uint64_t offset;
	uint32_t count;
} __attribute__((packed));

/* S: simple reply (then the data of a successful read). */
#define NBD_SIMPLE_REPLY_MAGIC UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC UINT32_C(0x668e33ef)
struct nbd_simple_reply {
	uint32_t magic;
	uint32_t error; /* NBD_E* */
	uint64_t cookie;
} __attribute__((packed));

/* S: one chunk of a structured reply (then its payload). */
struct nbd_structured_reply {
	uint32_t magic; /* NBD_STRUCTURED_REPLY_MAGIC */
	uint16_t flags; /* NBD_REPLY_FLAG_* */
	uint16_t type;  /* NBD_REPLY_TYPE_* */
	uint64_t cookie;
	uint32_t length; /* bytes of payload that follow */
} __attribute__((packed));

/* Payload of NBD_REPLY_TYPE_OFFSET_DATA (then the data). */
struct nbd_structured_reply_offset_data {
	uint64_t offset;
} __attribute__((packed));

/* Payload of NBD_REPLY_TYPE_OFFSET_HOLE. */
struct nbd_structured_reply_offset_hole {
	uint64_t offset;
	uint32_t length; /* not zero */
} __attribute__((packed));

/* Payload of the error chunks: then the message, then (ERROR_OFFSET only)
 * a u64 offset. */
struct nbd_structured_reply_error {
	uint32_t error; /* NBD_E*, not zero */
	uint16_t len;   /* message length */
} __attribute__((packed));

/* NBD_REPLY_TYPE_BLOCK_STATUS: a u32 context id, then descriptors. */
struct nbd_block_descriptor {
	uint32_t length; /* not zero */
	uint32_t status_flags;
} __attribute__((packed));

/* Structured reply flags and types. */
#define NBD_REPLY_FLAG_DONE (1u << 0)
#define NBD_REPLY_TYPE_NONE 0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR ((1u << 15) + 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET ((1u << 15) + 2)

/* The base:allocation metadata context's status flags. */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

/* Commands. */
#define NBD_CMD_READ 0
#define NBD_CMD_WRITE 1
#define NBD_CMD_DISC 2
#define NBD_CMD_FLUSH 3
#define NBD_CMD_TRIM 4
#define NBD_CMD_CACHE 5
#define NBD_CMD_WRITE_ZEROES 6
#define NBD_CMD_BLOCK_STATUS 7

/* Command flags. */
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/* Error values of replies (fixed numbers, not the host's errno). */
#define NBD_SUCCESS 0
#define NBD_EPERM 1
#define NBD_EIO 5
#define NBD_ENOMEM 12
#define NBD_EINVAL 22
#define NBD_ENOSPC 28
#define NBD_EOVERFLOW 75
#define NBD_ENOTSUP 95
#define NBD_ESHUTDOWN 108

/* Longest string (export name, message) the protocol allows. */
#define NBD_MAX_STRING 4096

#endif
