/* codec.c: sealing of frames (lz4 + XChaCha20-Poly1305) and of the data key
 * in the key object (Argon2id).  Everything written here is a stored format:
 * the layouts below must never change without a new version number.
 *
 * Frame (see codec.h):
 *   nonce[24] | AEAD(flags u8 | plaintext length u32 le | payload) | tag[16]
 * The payload is lz4 block data when flags == SEAL_FLAG_LZ4, the raw
 * plaintext when flags == 0.
 *
 * Associated data (SEAL_AD_BYTES = 32, all integers little-endian).  Byte 0
 * separates the two domains so a data AD can never equal a metadata AD:
 *   data:  [0] 'D'  [1..3] 0  [4..7] frame u32  [8..15] segment u64
 *          [16..23] inode u64  [24..31] block u64
 *   meta:  [0] 'M'  [1] kind  [2..7] 0  [8..15] seq u64  [16..31] 0
 *
 * Key object (SEAL_KEYFILE_BYTES = 132):
 *   [0..7] "ZEROFSK1"  [8..11] version u32  [12..19] opslimit u64
 *   [20..27] memlimit u64  [28..43] salt  [44..59] fsid  [60..83] nonce
 *   [84..131] data key wrapped with XChaCha20-Poly1305 (32 + 16 tag)
 * Bytes 0..59 are the associated data of the wrapping, so the KDF cost, salt
 * and fsid cannot be altered without the password failing.
 *
 * Frame errors are not logged here: the caller knows which object failed.
 * Key object errors are logged, since they end up in front of a user. */
#include "codec/codec.h"

#include <errno.h>
#include <limits.h>
#include <lz4.h>
#include <sodium.h>
#include <string.h>

#include "common/util.h"
#include "log.h"

#define FRAME_OVERHEAD (SEAL_NONCE_BYTES + SEAL_HDR_BYTES + SEAL_TAG_BYTES)

#define KF_MAGIC "ZEROFSK1"
#define KF_OFF_VERSION 8
#define KF_OFF_OPS 12
#define KF_OFF_MEM 20
#define KF_OFF_SALT 28
#define KF_OFF_FSID 44
#define KF_OFF_NONCE 60
#define KF_OFF_WRAPPED 84
#define KF_AD_BYTES KF_OFF_NONCE
#define KF_SALT_BYTES 16

_Static_assert(KF_OFF_WRAPPED + SEAL_KEY_BYTES + SEAL_TAG_BYTES == SEAL_KEYFILE_BYTES,
	       "key object layout does not add up");
_Static_assert(KF_SALT_BYTES == crypto_pwhash_SALTBYTES, "Argon2 salt size");
_Static_assert(SEAL_NONCE_BYTES == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(SEAL_TAG_BYTES == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(SEAL_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key size");

/* Bounds on the KDF cost read from a key object: generous for any real
 * setting (libsodium SENSITIVE is ops 4, 1 GiB) yet small enough that a
 * corrupted key object cannot make us spin for hours or allocate terabytes. */
#define KDF_OPS_MAX 64ULL
#define KDF_MEM_MAX (4ULL << 30)

int seal_init(void)
{
	if (sodium_init() < 0) {
		log_error("libsodium failed to initialise");
		return -EIO;
	}
	return 0;
}

struct seal_kdf seal_kdf_default(void)
{
	return (struct seal_kdf){ crypto_pwhash_OPSLIMIT_INTERACTIVE,
				  crypto_pwhash_MEMLIMIT_INTERACTIVE };
}

struct seal_kdf seal_kdf_min(void)
{
	return (struct seal_kdf){ crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN };
}

static int kdf_valid(struct seal_kdf kdf)
{
	return kdf.opslimit >= crypto_pwhash_OPSLIMIT_MIN && kdf.opslimit <= KDF_OPS_MAX &&
	       kdf.memlimit >= crypto_pwhash_MEMLIMIT_MIN && kdf.memlimit <= KDF_MEM_MAX &&
	       kdf.memlimit <= SIZE_MAX;
}

/* Derive the key-wrapping key from the password. */
static int derive_kek(unsigned char kek[SEAL_KEY_BYTES], const char *pw, size_t pwlen,
		      const uint8_t salt[KF_SALT_BYTES], struct seal_kdf kdf)
{
	if (crypto_pwhash(kek, SEAL_KEY_BYTES, pw, pwlen, salt, kdf.opslimit, (size_t)kdf.memlimit,
			  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		log_error("Argon2id key derivation failed (out of memory? memlimit %llu)",
			  (unsigned long long)kdf.memlimit);
		return -ENOMEM;
	}
	return 0;
}

/* Fill out with a key object wrapping key under password, with a fresh salt
 * and nonce. */
static int keyfile_wrap(const char *pw, size_t pwlen, struct seal_kdf kdf,
			const struct seal_key *key, const uint8_t fsid[SEAL_FSID_BYTES],
			uint8_t out[SEAL_KEYFILE_BYTES])
{
	unsigned char kek[SEAL_KEY_BYTES];
	int r;

	if (!kdf_valid(kdf)) {
		log_error("KDF cost out of bounds (ops %llu, mem %llu)",
			  (unsigned long long)kdf.opslimit, (unsigned long long)kdf.memlimit);
		return -EINVAL;
	}
	memcpy(out, KF_MAGIC, 8);
	put_le32(out + KF_OFF_VERSION, SEAL_KEYFILE_VERSION);
	put_le64(out + KF_OFF_OPS, kdf.opslimit);
	put_le64(out + KF_OFF_MEM, kdf.memlimit);
	randombytes_buf(out + KF_OFF_SALT, KF_SALT_BYTES);
	memcpy(out + KF_OFF_FSID, fsid, SEAL_FSID_BYTES);
	randombytes_buf(out + KF_OFF_NONCE, SEAL_NONCE_BYTES);

	r = derive_kek(kek, pw, pwlen, out + KF_OFF_SALT, kdf);
	if (r == 0)
		crypto_aead_xchacha20poly1305_ietf_encrypt(out + KF_OFF_WRAPPED, NULL, key->k,
							   SEAL_KEY_BYTES, out, KF_AD_BYTES, NULL,
							   out + KF_OFF_NONCE, kek);
	sodium_memzero(kek, sizeof(kek));
	return r;
}

int seal_keyfile_create(const char *password, size_t pwlen, struct seal_kdf kdf,
			struct seal_key *key, uint8_t fsid[SEAL_FSID_BYTES],
			uint8_t out[SEAL_KEYFILE_BYTES])
{
	int r;

	randombytes_buf(key->k, SEAL_KEY_BYTES);
	randombytes_buf(fsid, SEAL_FSID_BYTES);
	r = keyfile_wrap(password, pwlen, kdf, key, fsid, out);
	if (r < 0)
		sodium_memzero(key, sizeof(*key));
	return r;
}

/* Check that blob is a key object this program can read. */
static int keyfile_check(const uint8_t *b, size_t len, struct seal_kdf *kdf)
{
	uint32_t version;

	if (len < KF_OFF_VERSION + 4 || memcmp(b, KF_MAGIC, 8) != 0) {
		log_error("not a zerofs key object (bad magic)");
		return -EINVAL;
	}
	version = get_le32(b + KF_OFF_VERSION);
	if (version > SEAL_KEYFILE_VERSION) {
		log_error("key object version %u is newer than this program supports (%u)", version,
			  SEAL_KEYFILE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (version == 0 || len != SEAL_KEYFILE_BYTES) {
		log_error("malformed key object (version %u, %zu bytes)", version, len);
		return -EINVAL;
	}
	kdf->opslimit = get_le64(b + KF_OFF_OPS);
	kdf->memlimit = get_le64(b + KF_OFF_MEM);
	if (!kdf_valid(*kdf)) {
		log_error("key object has an implausible KDF cost (ops %llu, mem %llu)",
			  (unsigned long long)kdf->opslimit, (unsigned long long)kdf->memlimit);
		return -EINVAL;
	}
	return 0;
}

int seal_keyfile_open(const void *blob, size_t len, const char *password, size_t pwlen,
		      struct seal_key *key, uint8_t fsid[SEAL_FSID_BYTES])
{
	const uint8_t *b = blob;
	unsigned char kek[SEAL_KEY_BYTES];
	struct seal_kdf kdf;
	int r;

	r = keyfile_check(b, len, &kdf);
	if (r < 0)
		return r;
	r = derive_kek(kek, password, pwlen, b + KF_OFF_SALT, kdf);
	if (r < 0)
		return r;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(key->k, NULL, NULL, b + KF_OFF_WRAPPED,
						       SEAL_KEY_BYTES + SEAL_TAG_BYTES, b,
						       KF_AD_BYTES, b + KF_OFF_NONCE, kek) != 0) {
		/* A corrupted key object is indistinguishable from a wrong password. */
		log_error("wrong password (or corrupted key object)");
		sodium_memzero(key, sizeof(*key));
		r = -EACCES;
	} else {
		memcpy(fsid, b + KF_OFF_FSID, SEAL_FSID_BYTES);
	}
	sodium_memzero(kek, sizeof(kek));
	return r;
}

int seal_keyfile_rewrap(const void *blob, size_t len, const char *oldpw, size_t oldlen,
			const char *newpw, size_t newlen, struct seal_kdf kdf,
			uint8_t out[SEAL_KEYFILE_BYTES])
{
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES];
	int r;

	r = seal_keyfile_open(blob, len, oldpw, oldlen, &key, fsid);
	if (r < 0)
		return r;
	r = keyfile_wrap(newpw, newlen, kdf, &key, fsid, out);
	sodium_memzero(&key, sizeof(key));
	return r;
}

size_t seal_frame_bound(size_t plen)
{
	/* Compressed output is kept only when smaller than the input. */
	return plen + FRAME_OVERHEAD;
}

/* lz4-compress plain into dst when that saves at least one byte; returns the
 * compressed size, or 0 to store raw. */
static size_t try_compress(const void *plain, size_t plen, uint8_t *dst)
{
	int n;

	if (plen < 2 || plen > LZ4_MAX_INPUT_SIZE)
		return 0;
	n = LZ4_compress_default(plain, (char *)dst, (int)plen, (int)plen - 1);
	return n > 0 ? (size_t)n : 0;
}

ssize_t seal_frame_encode(const struct seal_key *key, const void *ad, size_t adlen,
			  const void *plain, size_t plen, void *out, size_t outcap, int compress)
{
	uint8_t *nonce = out;
	uint8_t *hdr = nonce + SEAL_NONCE_BYTES;
	uint8_t *payload = hdr + SEAL_HDR_BYTES;
	size_t psize = 0;
	unsigned long long clen;

	if (plen > UINT32_MAX)
		return -EFBIG;
	if (outcap < seal_frame_bound(plen))
		return -EOVERFLOW;
	if (compress)
		psize = try_compress(plain, plen, payload);
	hdr[0] = psize ? SEAL_FLAG_LZ4 : 0;
	if (!psize) {
		memcpy(payload, plain, plen);
		psize = plen;
	}
	put_le32(hdr + 1, (uint32_t)plen);
	randombytes_buf(nonce, SEAL_NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(hdr, &clen, hdr, SEAL_HDR_BYTES + psize, ad,
						   adlen, NULL, nonce, key->k);
	return (ssize_t)(SEAL_NONCE_BYTES + clen);
}

ssize_t seal_frame_decode(const struct seal_key *key, const void *ad, size_t adlen, void *frame,
			  size_t flen, void *out, size_t outcap)
{
	uint8_t *nonce = frame;
	uint8_t *hdr = nonce + SEAL_NONCE_BYTES;
	uint8_t *payload = hdr + SEAL_HDR_BYTES;
	unsigned long long mlen;
	size_t psize;
	uint32_t plen;

	if (flen < FRAME_OVERHEAD)
		return -EBADMSG;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		    hdr, &mlen, NULL, hdr, flen - SEAL_NONCE_BYTES, ad, adlen, nonce, key->k) != 0)
		return -EBADMSG;
	psize = (size_t)mlen - SEAL_HDR_BYTES;
	plen = get_le32(hdr + 1);
	if (hdr[0] != 0 && hdr[0] != SEAL_FLAG_LZ4)
		return -EBADMSG;
	if (plen > outcap)
		return -EOVERFLOW;
	if (hdr[0] == 0) {
		if (psize != plen)
			return -EBADMSG;
		memcpy(out, payload, plen);
		return plen;
	}
	if (plen > INT_MAX || psize > INT_MAX ||
	    LZ4_decompress_safe((const char *)payload, out, (int)psize, (int)plen) != (int)plen) {
		/* Authentic but undecodable: never hand back partial output. */
		memset(out, 0, plen);
		return -EBADMSG;
	}
	return plen;
}

ssize_t seal_frame_decode_direct(const struct seal_key *key, const void *ad, size_t adlen,
				 void *frame, size_t flen, void *out, size_t outcap)
{
	uint8_t *nonce = frame;
	uint8_t *c = nonce + SEAL_NONCE_BYTES;
	uint8_t *m = (uint8_t *)out - SEAL_HDR_BYTES;
	size_t mlen, psize;
	uint32_t plen;

	if (flen < FRAME_OVERHEAD)
		return -EBADMSG;
	mlen = flen - SEAL_NONCE_BYTES - SEAL_TAG_BYTES;
	psize = mlen - SEAL_HDR_BYTES;
	if (psize > outcap) /* too big either way: the in-place path says which error */
		return seal_frame_decode(key, ad, adlen, frame, flen, out, outcap);
	if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(m, NULL, c, mlen, c + mlen, ad,
								adlen, nonce, key->k) != 0)
		return -EBADMSG;
	plen = get_le32(m + 1);
	int rc = 0;
	if (m[0] != 0 && m[0] != SEAL_FLAG_LZ4)
		rc = -EBADMSG;
	else if (plen > outcap)
		rc = -EOVERFLOW;
	else if (m[0] == 0 && psize != plen)
		rc = -EBADMSG;
	if (rc < 0) {
		memset(out, 0, psize);
		return rc;
	}
	if (m[0] == 0)
		return plen;
	/* lz4: the compressed payload goes back over the frame's ciphertext
	 * (no longer needed), to be decompressed into out. */
	uint8_t *payload = c + SEAL_HDR_BYTES;
	memcpy(payload, out, psize);
	if (plen > INT_MAX || psize > INT_MAX ||
	    LZ4_decompress_safe((const char *)payload, out, (int)psize, (int)plen) != (int)plen) {
		memset(out, 0, plen);
		return -EBADMSG;
	}
	return plen;
}

void seal_ad_data(uint8_t ad[SEAL_AD_BYTES], uint64_t seg, uint32_t frame, uint64_t ino,
		  uint64_t blk)
{
	memset(ad, 0, SEAL_AD_BYTES);
	ad[0] = 'D';
	put_le32(ad + 4, frame);
	put_le64(ad + 8, seg);
	put_le64(ad + 16, ino);
	put_le64(ad + 24, blk);
}

void seal_ad_meta(uint8_t ad[SEAL_AD_BYTES], char kind, uint64_t seq)
{
	memset(ad, 0, SEAL_AD_BYTES);
	ad[0] = 'M';
	ad[1] = (uint8_t)kind;
	put_le64(ad + 8, seq);
}
