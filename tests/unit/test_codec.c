/* test_codec.c: unit tests for codec/: frame round trips and tamper
 * detection under both ciphers, known-answer tests of the AEAD primitives and
 * of the per-frame AES-256-GCM key, the key object, and fixed vectors that
 * pin the stored formats (frames, AD layouts, key objects). */
#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "codec/codec.h"
#include "common/util.h"

static void setup(void)
{
	cr_assert_eq(seal_init(), 0);
}

TestSuite(codec, .init = setup);

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
	size_t n = strlen(hex) / 2;

	cr_assert_leq(n, cap);
	for (size_t i = 0; i < n; i++) {
		unsigned v;

		cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
	return n;
}

static const enum seal_cipher ciphers[] = { SEAL_XCHACHA20POLY1305, SEAL_AES256GCM };
#define N_CIPHERS (sizeof(ciphers) / sizeof(ciphers[0]))

static struct seal_key cipher_key(uint8_t first, enum seal_cipher cipher)
{
	struct seal_key k;

	for (int i = 0; i < SEAL_KEY_BYTES; i++)
		k.k[i] = (uint8_t)(first + i);
	k.cipher = cipher;
	return k;
}

static struct seal_key fixed_key(uint8_t first)
{
	return cipher_key(first, SEAL_XCHACHA20POLY1305);
}

/* Encode then decode plen bytes; returns the frame length. */
static size_t round_trip_with(enum seal_cipher cipher, const void *plain, size_t plen,
			      int compress)
{
	struct seal_key key = cipher_key(0x10, cipher);
	uint8_t ad[SEAL_AD_BYTES];
	size_t cap = seal_frame_bound(plen);
	uint8_t *frame = malloc(cap);
	uint8_t *out = malloc(plen + 1);
	ssize_t n, m;

	seal_ad_data(ad, 7, 8, 9, 10);
	n = seal_frame_encode(&key, ad, sizeof(ad), plain, plen, frame, cap, compress);
	cr_assert_gt(n, 0);
	cr_assert_leq((size_t)n, cap);
	uint8_t *copy = malloc((size_t)n);
	memcpy(copy, frame, (size_t)n);
	m = seal_frame_decode(&key, ad, sizeof(ad), frame, (size_t)n, out, plen);
	cr_assert_eq(m, (ssize_t)plen);
	cr_assert(plen == 0 || memcmp(out, plain, plen) == 0);
	/* The direct decode, into a buffer with room for the header before it. */
	uint8_t *room = malloc(SEAL_HDR_BYTES + plen + 1);
	m = seal_frame_decode_direct(&key, ad, sizeof(ad), copy, (size_t)n, room + SEAL_HDR_BYTES,
				     plen);
	cr_assert_eq(m, (ssize_t)plen);
	cr_assert(plen == 0 || memcmp(room + SEAL_HDR_BYTES, plain, plen) == 0);
	free(room);
	free(copy);
	free(frame);
	free(out);
	return (size_t)n;
}

/* The same under each cipher: both give frames of one length. */
static size_t round_trip(const void *plain, size_t plen, int compress)
{
	size_t n = round_trip_with(SEAL_XCHACHA20POLY1305, plain, plen, compress);

	cr_assert_eq(round_trip_with(SEAL_AES256GCM, plain, plen, compress), n);
	return n;
}

Test(codec, round_trip_empty)
{
	cr_assert_eq(round_trip("", 0, 1), seal_frame_bound(0));
}

Test(codec, round_trip_one_byte)
{
	cr_assert_eq(round_trip("x", 1, 1), seal_frame_bound(1));
}

Test(codec, round_trip_compressible)
{
	size_t len = 64 * 1024;
	char *buf = malloc(len);

	for (size_t i = 0; i < len; i++)
		buf[i] = "zerofs-fuse "[i % 12];
	cr_assert_lt(round_trip(buf, len, 1), len / 10, "compressible data did not shrink");
	cr_assert_eq(round_trip(buf, len, 0), seal_frame_bound(len));
	free(buf);
}

Test(codec, round_trip_random_stored_raw)
{
	size_t len = 64 * 1024;
	uint8_t *buf = malloc(len);

	randombytes_buf(buf, len);
	cr_assert_eq(round_trip(buf, len, 1), seal_frame_bound(len));
	free(buf);
}

/* A sealed frame of a small, partly compressible plaintext. */
struct sample {
	struct seal_key key;
	uint8_t ad[SEAL_AD_BYTES];
	uint8_t plain[200];
	uint8_t frame[256];
	size_t flen;
};

static void make_sample_with(struct sample *s, int compress, enum seal_cipher cipher)
{
	ssize_t n;

	s->key = cipher_key(0x40, cipher);
	seal_ad_data(s->ad, 1, 2, 3, 4);
	for (size_t i = 0; i < sizeof(s->plain); i++)
		s->plain[i] = (uint8_t)(i < 100 ? 'a' : i * 7);
	n = seal_frame_encode(&s->key, s->ad, sizeof(s->ad), s->plain, sizeof(s->plain), s->frame,
			      sizeof(s->frame), compress);
	cr_assert_gt(n, 0);
	s->flen = (size_t)n;
}

static void make_sample(struct sample *s, int compress)
{
	make_sample_with(s, compress, SEAL_XCHACHA20POLY1305);
}

static ssize_t decode_copy(const struct seal_key *key, const uint8_t *ad, size_t flen,
			   const uint8_t *frame)
{
	uint8_t scratch[256], out[256];

	memcpy(scratch, frame, flen);
	return seal_frame_decode(key, ad, SEAL_AD_BYTES, scratch, flen, out, sizeof(out));
}

/* The same through seal_frame_decode_direct; the two must agree.  On
 * failure, out must hold nothing of the plaintext. */
static ssize_t decode_direct_copy(const struct seal_key *key, const uint8_t *ad, size_t flen,
				  const uint8_t *frame)
{
	uint8_t scratch[256], room[SEAL_HDR_BYTES + 256];
	ssize_t n;

	memset(room, 0x5a, sizeof(room)); /* defined bytes for the check below */
	memcpy(scratch, frame, flen);
	n = seal_frame_decode_direct(key, ad, SEAL_AD_BYTES, scratch, flen, room + SEAL_HDR_BYTES,
				     256);
	if (n < 0)
		for (size_t i = 0; i + 8 <= 200; i++)
			cr_assert(memcmp(room + SEAL_HDR_BYTES + i, "aaaaaaaa", 8) != 0);
	return n;
}

/* Every bit of the nonce, header, payload and tag is covered by the tag. */
static void flip_every_bit(int compress)
{
	struct sample s;
	uint8_t bad[256];

	for (size_t ci = 0; ci < N_CIPHERS; ci++) {
		enum seal_cipher c = ciphers[ci];

		make_sample_with(&s, compress, c);
		cr_assert_eq(decode_copy(&s.key, s.ad, s.flen, s.frame), (ssize_t)sizeof(s.plain));
		for (size_t bit = 0; bit < s.flen * 8; bit++) {
			memcpy(bad, s.frame, s.flen);
			bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			cr_assert_eq(decode_copy(&s.key, s.ad, s.flen, bad), -EBADMSG,
				     "cipher %d: flip of bit %zu accepted", c, bit);
			cr_assert_eq(decode_direct_copy(&s.key, s.ad, s.flen, bad), -EBADMSG,
				     "cipher %d: flip of bit %zu accepted (direct)", c, bit);
		}
	}
}

Test(codec, bit_flips_rejected_raw)
{
	flip_every_bit(0);
}

Test(codec, bit_flips_rejected_lz4)
{
	flip_every_bit(1);
}

Test(codec, wrong_ad_rejected)
{
	struct sample s;
	uint8_t ad[SEAL_AD_BYTES];

	for (size_t ci = 0; ci < N_CIPHERS; ci++) {
		enum seal_cipher c = ciphers[ci];

		make_sample_with(&s, 1, c);
		seal_ad_data(ad, 1, 3, 3, 4);
		cr_assert_eq(decode_copy(&s.key, ad, s.flen, s.frame), -EBADMSG);
		seal_ad_data(ad, 2, 2, 3, 4);
		cr_assert_eq(decode_copy(&s.key, ad, s.flen, s.frame), -EBADMSG);
		seal_ad_meta(ad, 'L', 1);
		cr_assert_eq(decode_copy(&s.key, ad, s.flen, s.frame), -EBADMSG);
	}
}

Test(codec, truncated_rejected)
{
	struct sample s;

	for (size_t ci = 0; ci < N_CIPHERS; ci++) {
		enum seal_cipher c = ciphers[ci];

		make_sample_with(&s, 1, c);
		for (size_t len = 0; len < s.flen; len++)
			cr_assert_eq(decode_copy(&s.key, s.ad, len, s.frame), -EBADMSG,
				     "truncated to %zu accepted", len);
		for (size_t len = 0; len < s.flen; len++)
			cr_assert_eq(decode_direct_copy(&s.key, s.ad, len, s.frame), -EBADMSG,
				     "truncated to %zu accepted (direct)", len);
	}
}

Test(codec, wrong_key_rejected)
{
	struct sample s;

	for (size_t ci = 0; ci < N_CIPHERS; ci++) {
		enum seal_cipher c = ciphers[ci];

		struct seal_key other = cipher_key(0x41, c);

		make_sample_with(&s, 1, c);
		cr_assert_eq(decode_copy(&other, s.ad, s.flen, s.frame), -EBADMSG);
	}
}

/* A frame is bound to its cipher: the same key under the other cipher
 * rejects it. */
Test(codec, wrong_cipher_rejected)
{
	struct sample s;
	struct seal_key other;

	make_sample_with(&s, 1, SEAL_XCHACHA20POLY1305);
	other = cipher_key(0x40, SEAL_AES256GCM);
	cr_assert_eq(decode_copy(&other, s.ad, s.flen, s.frame), -EBADMSG);
	make_sample_with(&s, 1, SEAL_AES256GCM);
	other = cipher_key(0x40, SEAL_XCHACHA20POLY1305);
	cr_assert_eq(decode_copy(&other, s.ad, s.flen, s.frame), -EBADMSG);
}

Test(codec, small_buffers)
{
	struct sample s;
	uint8_t out[sizeof(s.plain)];
	uint8_t frame[256];

	make_sample(&s, 1);
	memcpy(frame, s.frame, s.flen);
	cr_assert_eq(
		seal_frame_decode(&s.key, s.ad, sizeof(s.ad), frame, s.flen, out, sizeof(out) - 1),
		-EOVERFLOW);
	cr_assert_eq(seal_frame_encode(&s.key, s.ad, sizeof(s.ad), s.plain, sizeof(s.plain), frame,
				       seal_frame_bound(sizeof(s.plain)) - 1, 1),
		     -EOVERFLOW);
	/* The direct decode, of an lz4 frame and of a raw one. */
	uint8_t room[SEAL_HDR_BYTES + sizeof(s.plain)];
	for (int compress = 1; compress >= 0; compress--) {
		make_sample(&s, compress);
		memcpy(frame, s.frame, s.flen);
		cr_assert_eq(seal_frame_decode_direct(&s.key, s.ad, sizeof(s.ad), frame, s.flen,
						      room + SEAL_HDR_BYTES, sizeof(s.plain) - 1),
			     -EOVERFLOW);
	}
}

/* draft-irtf-cfrg-xchacha-03, appendix A.3.1: proves the AEAD we call is
 * XChaCha20-Poly1305 as specified. */
Test(codec, xchacha20poly1305_known_answer)
{
	static const char pt[] = "Ladies and Gentlemen of the class of '99: If I could offer you "
				 "only one tip for the future, sunscreen would be it.";
	static const char ct_hex[] =
		"bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
		"731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
		"2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
		"21f9664c97637da9768812f615c68b13b52e"
		"c0875924c1c7987947deafd8780acf49";
	struct seal_key key = fixed_key(0x80);
	uint8_t nonce[24], ad[12], want[256], got[256], back[256];
	unsigned long long clen, mlen;
	size_t wlen = unhex(ct_hex, want, sizeof(want));

	for (int i = 0; i < 24; i++)
		nonce[i] = (uint8_t)(0x40 + i);
	unhex("50515253c0c1c2c3c4c5c6c7", ad, sizeof(ad));
	crypto_aead_xchacha20poly1305_ietf_encrypt(got, &clen, (const uint8_t *)pt, strlen(pt), ad,
						   sizeof(ad), NULL, nonce, key.k);
	cr_assert_eq(clen, wlen);
	cr_assert_arr_eq(got, want, wlen);
	cr_assert_eq(crypto_aead_xchacha20poly1305_ietf_decrypt(back, &mlen, NULL, want, wlen, ad,
								sizeof(ad), nonce, key.k),
		     0);
	cr_assert_eq(mlen, strlen(pt));
	cr_assert_arr_eq(back, pt, mlen);
}

/* The GCM specification (McGrew and Viega), test case 16: AES-256 with a
 * 96-bit IV and associated data.  Proves the primitive OpenSSL gives us is
 * AES-256-GCM as specified. */
Test(codec, aes256gcm_known_answer)
{
	uint8_t key[32], iv[12], ad[20], pt[60], want[60], tag[16], got[60], gtag[16];
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n;

	unhex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", key,
	      sizeof(key));
	unhex("cafebabefacedbaddecaf888", iv, sizeof(iv));
	unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", ad, sizeof(ad));
	unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
	      "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
	      pt, sizeof(pt));
	unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
	      "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
	      want, sizeof(want));
	unhex("76fc6ece0f4e1768cddf8853bb2d551b", tag, sizeof(tag));
	cr_assert_not_null(ctx);
	cr_assert_eq(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, iv), 1);
	cr_assert_eq(EVP_EncryptUpdate(ctx, NULL, &n, ad, sizeof(ad)), 1);
	cr_assert_eq(EVP_EncryptUpdate(ctx, got, &n, pt, sizeof(pt)), 1);
	cr_assert_eq(EVP_EncryptFinal_ex(ctx, got + n, &n), 1);
	cr_assert_eq(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, gtag), 1);
	cr_assert_arr_eq(got, want, sizeof(want));
	cr_assert_arr_eq(gtag, tag, sizeof(tag));
	EVP_CIPHER_CTX_free(ctx);
}

/* An AES-256-GCM frame opened by hand, as codec.c documents it: the frame
 * key is BLAKE2b-256 keyed with the data key over nonce[0..15], personal
 * "zerofs-frame-gcm"; the IV is nonce[16..23] then four zero bytes; the AD
 * is the frame's; the header and payload follow the nonce and the tag ends
 * the frame. */
Test(codec, aes256gcm_frame_construction)
{
	static const unsigned char personal[16] = { 'z', 'e', 'r', 'o', 'f', 's', '-', 'f',
						    'r', 'a', 'm', 'e', '-', 'g', 'c', 'm' };
	struct seal_key key = cipher_key(0x20, SEAL_AES256GCM);
	uint8_t ad[SEAL_AD_BYTES], frame[128], fk[32], iv[12] = { 0 }, m[128];
	const char *plain = "a frame under AES-256-GCM";
	size_t plen = strlen(plain), mlen;
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	ssize_t flen;
	int n;

	seal_ad_data(ad, 5, 6, 7, 8);
	flen = seal_frame_encode(&key, ad, sizeof(ad), plain, plen, frame, sizeof(frame), 0);
	cr_assert_eq(flen, (ssize_t)seal_frame_bound(plen));
	mlen = (size_t)flen - SEAL_NONCE_BYTES - SEAL_TAG_BYTES;
	cr_assert_eq(crypto_generichash_blake2b_salt_personal(fk, sizeof(fk), frame, 16, key.k,
							      sizeof(key.k), NULL, personal),
		     0);
	memcpy(iv, frame + 16, 8);
	cr_assert_not_null(ctx);
	cr_assert_eq(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, fk, iv), 1);
	cr_assert_eq(EVP_DecryptUpdate(ctx, NULL, &n, ad, sizeof(ad)), 1);
	cr_assert_eq(EVP_DecryptUpdate(ctx, m, &n, frame + SEAL_NONCE_BYTES, (int)mlen), 1);
	cr_assert_eq(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16,
					 frame + SEAL_NONCE_BYTES + mlen),
		     1);
	cr_assert_eq(EVP_DecryptFinal_ex(ctx, m + n, &n), 1);
	EVP_CIPHER_CTX_free(ctx);
	cr_assert_eq(m[0], 0); /* flags: stored raw */
	cr_assert_eq(get_le32(m + 1), plen);
	cr_assert_arr_eq(m + SEAL_HDR_BYTES, plain, plen);
}

/* Frames sealed once by this code and committed: if these stop decoding, the
 * on-disk frame format (or the data AD layout) changed. */
static void check_stored_frame(enum seal_cipher cipher, const char *hex, const void *want,
			       size_t wlen)
{
	struct seal_key key = cipher_key(0xa0, cipher);
	uint8_t ad[SEAL_AD_BYTES], frame[256], out[256];
	size_t flen = unhex(hex, frame, sizeof(frame));

	seal_ad_data(ad, 1, 2, 3, 4);
	cr_assert_eq(seal_frame_decode(&key, ad, sizeof(ad), frame, flen, out, sizeof(out)),
		     (ssize_t)wlen);
	cr_assert_arr_eq(out, want, wlen);
}

Test(codec, stored_frame_raw)
{
	static const char hex[] = "80f9f6b4858f46c7c2b7b0bb2caccf0050488b375001da7cda5bf8619cc00d06"
				  "46ede88aef1ecdd229dd40397d1841b19a273d8ecd91534e6b7d3fbc";

	check_stored_frame(SEAL_XCHACHA20POLY1305, hex, "zerofs frame v1", 15);
}

Test(codec, stored_frame_raw_aes256gcm)
{
	static const char hex[] = "22ba48c65d8cbea0dc03fffd859629f1dd30b1669474150fb4a7fd6b4e1e2fb9"
				  "41acf2a0ac5af3d4d5fcf04a2ab1286a520332cc440c635df69c0f6a";

	check_stored_frame(SEAL_AES256GCM, hex, "zerofs frame v2", 15);
}

Test(codec, stored_frame_lz4)
{
	static const char hex[] = "38a62f5ca98d1dd0cad4609cc4d177a6d3850592546067f5d65805550bc6ce85"
				  "49e6678b593bb567292449ed1cec8de478b34e197a0dc865a46bfd9846";
	char want[96];

	for (int i = 0; i < 96; i++)
		want[i] = "zerofs"[i % 6];
	check_stored_frame(SEAL_XCHACHA20POLY1305, hex, want, sizeof(want));
}

Test(codec, stored_frame_lz4_aes256gcm)
{
	static const char hex[] = "79ba7a636376acddecb6d5b5c25ef976449a6ab2d549df5f504f8ec8fcc11812"
				  "7e9a3ecabcaea0541f39a36a87851da51c7f2e62cfee54e85273527d08";
	char want[96];

	for (int i = 0; i < 96; i++)
		want[i] = "zerofs"[i % 6];
	check_stored_frame(SEAL_AES256GCM, hex, want, sizeof(want));
}

Test(codec, ad_layouts)
{
	uint8_t ad[SEAL_AD_BYTES], want[SEAL_AD_BYTES];

	seal_ad_data(ad, 0x0807060504030201ULL, 0x0c0b0a09, 0x1817161514131211ULL,
		     0x2827262524232221ULL);
	unhex("44000000090a0b0c0102030405060708"
	      "11121314151617182122232425262728",
	      want, sizeof(want));
	cr_assert_arr_eq(ad, want, SEAL_AD_BYTES);
	seal_ad_meta(ad, 'C', 0x0807060504030201ULL);
	unhex("4d430000000000000102030405060708"
	      "00000000000000000000000000000000",
	      want, sizeof(want));
	cr_assert_arr_eq(ad, want, SEAL_AD_BYTES);
}

Test(codec, kdf_costs)
{
	struct seal_kdf d = seal_kdf_default(), m = seal_kdf_min();

	cr_assert_eq(d.opslimit, 2);
	cr_assert_eq(d.memlimit, 64ULL << 20);
	cr_assert_eq(m.opslimit, 1);
	cr_assert_eq(m.memlimit, 8192);
}

#define PW "correct horse"
#define PWLEN strlen(PW)

struct keyobj {
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES];
	uint8_t blob[SEAL_KEYFILE_BYTES];
	size_t len;
};

static void make_keyobj(struct keyobj *ko, enum seal_cipher cipher)
{
	ssize_t n = seal_keyfile_create(PW, PWLEN, seal_kdf_min(), cipher, &ko->key, ko->fsid,
					ko->blob);

	/* XChaCha20-Poly1305 keeps the version 1 object older programs read. */
	cr_assert_eq(n, cipher == SEAL_XCHACHA20POLY1305 ? SEAL_KEYFILE_V1_BYTES
							 : SEAL_KEYFILE_BYTES);
	cr_assert_eq(get_le32(ko->blob + 8), cipher == SEAL_XCHACHA20POLY1305 ? 1 : 2);
	cr_assert_eq(ko->key.cipher, cipher);
	ko->len = (size_t)n;
}

/* Where the nonce of the key object is (version 1: 60, version 2: 64). */
static size_t nonce_off(const struct keyobj *ko)
{
	return ko->len == SEAL_KEYFILE_V1_BYTES ? 60 : 64;
}

Test(codec, keyfile_round_trip)
{
	struct keyobj ko;
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES];

	for (size_t ci = 0; ci < N_CIPHERS; ci++) {
		make_keyobj(&ko, ciphers[ci]);
		memset(&key, 0, sizeof(key));
		cr_assert_eq(seal_keyfile_open(ko.blob, ko.len, PW, PWLEN, &key, fsid), 0);
		cr_assert_arr_eq(key.k, ko.key.k, SEAL_KEY_BYTES);
		cr_assert_eq(key.cipher, ciphers[ci]);
		cr_assert_arr_eq(fsid, ko.fsid, SEAL_FSID_BYTES);
	}
	cr_assert_eq(seal_keyfile_create(PW, PWLEN, seal_kdf_min(), 3, &ko.key, ko.fsid, ko.blob),
		     -EINVAL);
}

Test(codec, keyfile_wrong_password)
{
	struct keyobj ko;
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES];

	for (size_t ci = 0; ci < N_CIPHERS; ci++) {
		make_keyobj(&ko, ciphers[ci]);
		cr_assert_eq(seal_keyfile_open(ko.blob, ko.len, "correct horsE", PWLEN, &key, fsid),
			     -EACCES);
		cr_assert_eq(seal_keyfile_open(ko.blob, ko.len, PW, PWLEN - 1, &key, fsid),
			     -EACCES);
	}
}

/* Flip one bit in each byte outside the version field; the KDF fields only
 * in their low bits, so the flipped cost stays cheap or is rejected.  A
 * flipped cipher field names an unknown cipher or fails the password. */
Test(codec, keyfile_bit_flips)
{
	struct keyobj ko;
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES], bad[SEAL_KEYFILE_BYTES];

	for (size_t ci = 0; ci < N_CIPHERS; ci++) {
		make_keyobj(&ko, ciphers[ci]);
		for (size_t i = 0; i < ko.len; i++) {
			int r;

			if ((i >= 8 && i < 12) || (i > 12 && i < 20) || (i > 21 && i < 28))
				continue;
			memcpy(bad, ko.blob, ko.len);
			bad[i] ^= (uint8_t)(1u << (i % 8));
			r = seal_keyfile_open(bad, ko.len, PW, PWLEN, &key, fsid);
			if (ko.len == SEAL_KEYFILE_BYTES && i >= 60 && i < 64)
				cr_assert(r == -EACCES || r == -EPROTONOSUPPORT,
					  "flip in cipher byte %zu gave %d", i, r);
			else
				cr_assert(r == -EACCES || r == -EINVAL,
					  "flip in byte %zu (len %zu) gave %d", i, ko.len, r);
		}
	}
}

/* The cipher field is bound to the password: naming the other known cipher
 * fails as a wrong password would, never opens the key for it. */
Test(codec, keyfile_cipher_bound)
{
	struct keyobj ko;
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES];

	make_keyobj(&ko, SEAL_AES256GCM);
	put_le32(ko.blob + 60, SEAL_XCHACHA20POLY1305);
	cr_assert_eq(seal_keyfile_open(ko.blob, ko.len, PW, PWLEN, &key, fsid), -EACCES);
	put_le32(ko.blob + 60, 7);
	cr_assert_eq(seal_keyfile_open(ko.blob, ko.len, PW, PWLEN, &key, fsid), -EPROTONOSUPPORT);
}

Test(codec, keyfile_not_a_key_object)
{
	struct keyobj ko;
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES];

	for (size_t ci = 0; ci < N_CIPHERS; ci++) {
		make_keyobj(&ko, ciphers[ci]);
		cr_assert_eq(seal_keyfile_open(ko.blob, ko.len - 1, PW, PWLEN, &key, fsid),
			     -EINVAL);
		cr_assert_eq(seal_keyfile_open(ko.blob, 4, PW, PWLEN, &key, fsid), -EINVAL);
		ko.blob[0] = 'X';
		cr_assert_eq(seal_keyfile_open(ko.blob, ko.len, PW, PWLEN, &key, fsid), -EINVAL);
	}
	/* A version 1 object of version 2's length and the other way round. */
	make_keyobj(&ko, SEAL_XCHACHA20POLY1305);
	cr_assert_eq(seal_keyfile_open(ko.blob, SEAL_KEYFILE_BYTES, PW, PWLEN, &key, fsid),
		     -EINVAL);
	make_keyobj(&ko, SEAL_AES256GCM);
	cr_assert_eq(seal_keyfile_open(ko.blob, SEAL_KEYFILE_V1_BYTES, PW, PWLEN, &key, fsid),
		     -EINVAL);
}

Test(codec, keyfile_newer_version)
{
	struct keyobj ko;
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES];

	make_keyobj(&ko, SEAL_AES256GCM);
	put_le32(ko.blob + 8, SEAL_KEYFILE_VERSION + 1);
	cr_assert_eq(seal_keyfile_open(ko.blob, ko.len, PW, PWLEN, &key, fsid), -EPROTONOSUPPORT);
	/* A newer version may have another size: the version decides first. */
	cr_assert_eq(seal_keyfile_open(ko.blob, 40, PW, PWLEN, &key, fsid), -EPROTONOSUPPORT);
}

Test(codec, keyfile_absurd_cost_rejected)
{
	struct keyobj ko;
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES];

	for (size_t ci = 0; ci < N_CIPHERS; ci++) {
		make_keyobj(&ko, ciphers[ci]);
		put_le64(ko.blob + 20, 1ULL << 42);
		cr_assert_eq(seal_keyfile_open(ko.blob, ko.len, PW, PWLEN, &key, fsid), -EINVAL);
		make_keyobj(&ko, ciphers[ci]);
		put_le64(ko.blob + 12, 1ULL << 40);
		cr_assert_eq(seal_keyfile_open(ko.blob, ko.len, PW, PWLEN, &key, fsid), -EINVAL);
		make_keyobj(&ko, ciphers[ci]);
		put_le64(ko.blob + 12, 0);
		cr_assert_eq(seal_keyfile_open(ko.blob, ko.len, PW, PWLEN, &key, fsid), -EINVAL);
	}
}

Test(codec, keyfile_rewrap_keeps_data_key)
{
	struct keyobj ko;
	struct seal_key key;
	uint8_t fsid[SEAL_FSID_BYTES], blob2[SEAL_KEYFILE_BYTES];

	for (size_t ci = 0; ci < N_CIPHERS; ci++) {
		size_t off;

		make_keyobj(&ko, ciphers[ci]);
		off = nonce_off(&ko);
		cr_assert_eq(seal_keyfile_rewrap(ko.blob, ko.len, "nope", 4, "new", 3,
						 seal_kdf_min(), blob2),
			     -EACCES);
		cr_assert_eq(seal_keyfile_rewrap(ko.blob, ko.len, PW, PWLEN, "new", 3,
						 seal_kdf_min(), blob2),
			     (ssize_t)ko.len);
		cr_assert_eq(seal_keyfile_open(blob2, ko.len, PW, PWLEN, &key, fsid), -EACCES);
		cr_assert_eq(seal_keyfile_open(blob2, ko.len, "new", 3, &key, fsid), 0);
		cr_assert_arr_eq(key.k, ko.key.k, SEAL_KEY_BYTES);
		cr_assert_eq(key.cipher, ciphers[ci]);
		cr_assert_arr_eq(fsid, ko.fsid, SEAL_FSID_BYTES);
		/* Fresh salt and nonce. */
		cr_assert_arr_neq(blob2 + 28, ko.blob + 28, 16);
		cr_assert_arr_neq(blob2 + off, ko.blob + off, 24);
	}
}

/* Open a committed key object made once by this code and check the data
 * key, cipher and fsid it gives. */
static void check_stored_keyfile(const char *hex, size_t size, const char *key_hex,
				 enum seal_cipher cipher, const char *fsid_hex)
{
	uint8_t blob[SEAL_KEYFILE_BYTES], want_key[SEAL_KEY_BYTES], want_fsid[SEAL_FSID_BYTES];
	uint8_t fsid[SEAL_FSID_BYTES];
	struct seal_key key;

	cr_assert_eq(unhex(hex, blob, sizeof(blob)), size);
	unhex(key_hex, want_key, sizeof(want_key));
	unhex(fsid_hex, want_fsid, sizeof(want_fsid));
	cr_assert_eq(seal_keyfile_open(blob, size, PW, PWLEN, &key, fsid), 0);
	cr_assert_arr_eq(key.k, want_key, SEAL_KEY_BYTES);
	cr_assert_eq(key.cipher, cipher);
	cr_assert_arr_eq(fsid, want_fsid, SEAL_FSID_BYTES);
}

/* A key object made once by this code (version 1) with the minimum KDF
 * cost: pins the key object layout, its AD and the Argon2id parameters. */
Test(codec, stored_keyfile)
{
	check_stored_keyfile("5a45524f46534b310100000001000000000000000020000000000000cbbf5aa8"
			     "d05833e014dc9d5a128d1f86b2e1cd489f6222af416f9c55c92d103513498079"
			     "423de8f2930a0dacd4bb526b7a0cc1fb5612a0d0c5db7394a3dae1182ce7dd29"
			     "00786acecdf1926dfc21a9aab2052f3532369a724f600dad4fe93fe0a7240182"
			     "f97b2d7c",
			     SEAL_KEYFILE_V1_BYTES,
			     "6e2cc18e55ff4758f567612277d7800af448fb87cf6be3be3e7fedbb4dc06ec0",
			     SEAL_XCHACHA20POLY1305, "b2e1cd489f6222af416f9c55c92d1035");
}

/* A version 2 key object (AES-256-GCM) made once by this code with the
 * minimum KDF cost: pins its layout, the cipher field and its AD. */
Test(codec, stored_keyfile_v2)
{
	check_stored_keyfile("5a45524f46534b310200000001000000000000000020000000000000c656e30c"
			     "095a39f2827ed6d11387a0f308889e5076c3d2d8836d376a207acb4602000000"
			     "a36c4146cbdbc2005683e89f3af38851c25997e1f6ec834a42690e162a939cc2"
			     "3530b8b28e9637669c967a361d1c4b7b949ddedde96cb98370019ee9b0078e8c"
			     "2c287ab697d74602",
			     SEAL_KEYFILE_BYTES,
			     "7ab18c7c1f038b10ed51ea3d54083424d838e6376cb910e7c0942b1cc9c52a2b",
			     SEAL_AES256GCM, "08889e5076c3d2d8836d376a207acb46");
}
