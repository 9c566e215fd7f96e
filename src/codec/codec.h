/* codec.h: how bytes are sealed before they reach the object store.
 *
 * A frame is   nonce[24] | AEAD(header[5] | payload) | tag[16]
 * where header = flags (1 byte: SEAL_FLAG_LZ4 when the payload is lz4
 * compressed) and the plaintext length (u32 le).  The caller supplies the
 * associated data, which binds a frame to where it belongs (segment, frame
 * number, inode, block): a frame copied elsewhere fails authentication.
 *
 * The AEAD is the filesystem's cipher, chosen when it is made and recorded
 * in its key object (see codec.c for both constructions):
 *   SEAL_XCHACHA20POLY1305  XChaCha20-Poly1305 (libsodium), fast everywhere;
 *   SEAL_AES256GCM          AES-256-GCM (OpenSSL) under a key derived per
 *                           frame from the nonce; about 3 times faster where
 *                           the CPU has AES instructions.
 *
 * The data key is random (32 bytes) and is stored only wrapped by a key
 * derived from the password with Argon2id, in the key object (zerofs.key):
 *
 *   version 1 (132 bytes; the cipher is XChaCha20-Poly1305):
 *     magic "ZEROFSK1" | version u32 | opslimit u64 | memlimit u64 |
 *     salt[16] | fsid[16] | nonce[24] | wrapped key (32 + 16 tag)
 *   version 2 (136 bytes):
 *     the same, with cipher u32 after fsid
 *
 * with everything before the nonce as associated data of the wrapping (which
 * is always XChaCha20-Poly1305).  A filesystem using XChaCha20-Poly1305 keeps
 * a version 1 key object, so older programs still read it.
 *
 * Locking: no shared state (each thread keeps its own AES-GCM context);
 * every function is thread-safe.  seal_init must run once before the
 * others. */
#ifndef ZEROFS_CODEC_H
#define ZEROFS_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SEAL_KEY_BYTES 32
#define SEAL_NONCE_BYTES 24
#define SEAL_TAG_BYTES 16
#define SEAL_HDR_BYTES 5
#define SEAL_FSID_BYTES 16
#define SEAL_FLAG_LZ4 0x01
#define SEAL_KEYFILE_VERSION 2
/* The largest key object (version 2); version 1 has SEAL_KEYFILE_V1_BYTES. */
#define SEAL_KEYFILE_BYTES 136
#define SEAL_KEYFILE_V1_BYTES 132

/* Frame ciphers; the numbers are stored in key objects. */
enum seal_cipher {
	SEAL_XCHACHA20POLY1305 = 1,
	SEAL_AES256GCM = 2,
};

struct seal_key {
	unsigned char k[SEAL_KEY_BYTES];
	enum seal_cipher cipher;
};

/* Argon2id cost. */
struct seal_kdf {
	uint64_t opslimit;
	uint64_t memlimit;
};

/* 0 or -errno (libsodium could not initialise). */
int seal_init(void);

/* Default KDF cost (libsodium INTERACTIVE: ops 2, 64 MiB) and the minimum
 * (ops 1, 8 KiB: for tests only, selected by kdf="min"). */
struct seal_kdf seal_kdf_default(void);
struct seal_kdf seal_kdf_min(void);

/* The cipher of a new filesystem when none is asked for: AES-256-GCM when
 * the CPU has AES and carry-less multiply instructions, XChaCha20-Poly1305
 * otherwise. */
enum seal_cipher seal_cipher_default(void);
/* "aes-256-gcm", "xchacha20-poly1305"; 0 or -EINVAL for another name. */
int seal_cipher_parse(const char *name, enum seal_cipher *cipher);
const char *seal_cipher_name(enum seal_cipher cipher);

/* Make a new random data key for frames sealed with cipher and its key object
 * wrapped by the password.  out must hold SEAL_KEYFILE_BYTES.  fsid receives
 * a new random filesystem id.  Returns the key object's length or -errno. */
ssize_t seal_keyfile_create(const char *password, size_t pwlen, struct seal_kdf kdf,
			    enum seal_cipher cipher, struct seal_key *key,
			    uint8_t fsid[SEAL_FSID_BYTES], uint8_t out[SEAL_KEYFILE_BYTES]);

/* Unwrap the data key (and its cipher) from a key object.  Returns 0,
 * -EINVAL when blob is not a key object (bad magic or size),
 * -EPROTONOSUPPORT when its version or cipher is newer than this program's,
 * -EACCES when the password is wrong. */
int seal_keyfile_open(const void *blob, size_t len, const char *password, size_t pwlen,
		      struct seal_key *key, uint8_t fsid[SEAL_FSID_BYTES]);

/* Re-wrap the same data key under a new password (new salt and nonce); the
 * fsid, cipher and data key stay.  out must hold SEAL_KEYFILE_BYTES.  Returns
 * the new key object's length or -errno (-EACCES if the old password is
 * wrong). */
ssize_t seal_keyfile_rewrap(const void *blob, size_t len, const char *oldpw, size_t oldlen,
			    const char *newpw, size_t newlen, struct seal_kdf kdf,
			    uint8_t out[SEAL_KEYFILE_BYTES]);

/* Largest frame that seal_frame_encode can produce for plen plaintext bytes. */
size_t seal_frame_bound(size_t plen);

/* Seal plen bytes of plain into out (capacity outcap >= seal_frame_bound(plen)).
 * lz4-compresses first when compress is set and the result is smaller; stores
 * the bytes raw otherwise.  Returns the frame length or -errno. */
ssize_t seal_frame_encode(const struct seal_key *key, const void *ad, size_t adlen,
			  const void *plain, size_t plen, void *out, size_t outcap,
			  int compress);

/* Open a frame.  frame is used as scratch and is clobbered.  Writes the
 * plaintext into out (capacity outcap) and returns its length; -EBADMSG when
 * authentication fails or the frame is malformed (never partial output),
 * -EOVERFLOW when outcap is too small, -ENOMEM when the cipher could not be
 * set up (the frame may well be sound: report it as such). */
ssize_t seal_frame_decode(const struct seal_key *key, const void *ad, size_t adlen,
			  void *frame, size_t flen, void *out, size_t outcap);
/* The same, decrypting straight into out, which must have SEAL_HDR_BYTES
 * writable bytes before it (they are clobbered): a frame stored without
 * compression then costs no copy.  On failure out holds zeros or nothing of
 * the plaintext. */
ssize_t seal_frame_decode_direct(const struct seal_key *key, const void *ad, size_t adlen,
				 void *frame, size_t flen, void *out, size_t outcap);

/* Associated data for a data frame: 32 bytes (segment, frame number, inode,
 * block), little-endian. */
#define SEAL_AD_BYTES 32
void seal_ad_data(uint8_t ad[SEAL_AD_BYTES], uint64_t seg, uint32_t frame, uint64_t ino,
		  uint64_t blk);
/* Associated data for a metadata object: kind ('L' log, 'C' checkpoint,
 * 'T' segment trailer) and sequence number or segment id. */
void seal_ad_meta(uint8_t ad[SEAL_AD_BYTES], char kind, uint64_t seq);

#endif
