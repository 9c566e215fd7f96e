/* test_s3sign.c: the SigV4 signer against AWS's published vectors: cases of
 * the Signature Version 4 test suite (AKIDEXAMPLE, 20150830T123600Z,
 * us-east-1, service "service") and the GET Object example of the S3
 * SigV4 documentation (examplebucket, 20130524T000000Z), byte-exact. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store/s3_sign.h"

#define SUITE_DATE "20150830T123600Z"
#define SUITE_CRED \
	"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "

static const struct s3_sign_key suite_key = {
	.access_key = "AKIDEXAMPLE",
	.secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
	.region = "us-east-1",
	.service = "service",
};

static void check(const struct s3_sign_req *r, const char *date, const struct s3_sign_key *k,
		  const char *want)
{
	char auth[1024];

	cr_assert_eq(s3_sign(r, date, k, auth, sizeof(auth)), 0);
	cr_assert_str_eq(auth, want);
}

Test(s3sign, get_vanilla)
{
	struct s3_hdr h[] = { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } };
	struct s3_sign_req r = {
		.method = "GET", .path = "/", .hdrs = h, .nhdrs = 2, .payload_hash = S3_EMPTY_SHA256
	};
	char creq[1024];

	cr_assert_eq(s3_canonical_request(&r, creq, sizeof(creq)), 0);
	cr_assert_str_eq(creq, "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
			       "\nhost;x-amz-date\n" S3_EMPTY_SHA256);
	check(&r, SUITE_DATE, &suite_key,
	      SUITE_CRED
	      "SignedHeaders=host;x-amz-date, "
	      "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

Test(s3sign, get_vanilla_query_order_key_case)
{
	struct s3_hdr h[] = { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } };
	struct s3_sign_req r = { .method = "GET",
				 .path = "/",
				 .query = "Param2=value2&Param1=value1",
				 .hdrs = h,
				 .nhdrs = 2,
				 .payload_hash = S3_EMPTY_SHA256 };
	char creq[1024];

	cr_assert_eq(s3_canonical_request(&r, creq, sizeof(creq)), 0);
	cr_assert_str_eq(creq, "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
			       "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" S3_EMPTY_SHA256);
	check(&r, SUITE_DATE, &suite_key,
	      SUITE_CRED
	      "SignedHeaders=host;x-amz-date, "
	      "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}

Test(s3sign, post_vanilla)
{
	struct s3_hdr h[] = { { "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE } };
	struct s3_sign_req r = { .method = "POST",
				 .path = "/",
				 .hdrs = h,
				 .nhdrs = 2,
				 .payload_hash = S3_EMPTY_SHA256 };

	check(&r, SUITE_DATE, &suite_key,
	      SUITE_CRED
	      "SignedHeaders=host;x-amz-date, "
	      "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b");
}

Test(s3sign, get_header_value_trim)
{
	struct s3_hdr h[] = { { "Host", "example.amazonaws.com" },
			      { "My-Header1", " value1" },
			      { "My-Header2", "\"a   b   c\"" },
			      { "X-Amz-Date", SUITE_DATE } };
	struct s3_sign_req r = {
		.method = "GET", .path = "/", .hdrs = h, .nhdrs = 4, .payload_hash = S3_EMPTY_SHA256
	};
	char creq[1024];

	cr_assert_eq(s3_canonical_request(&r, creq, sizeof(creq)), 0);
	cr_assert_str_eq(creq, "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\n"
			       "my-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\n"
			       "host;my-header1;my-header2;x-amz-date\n" S3_EMPTY_SHA256);
	check(&r, SUITE_DATE, &suite_key,
	      SUITE_CRED
	      "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
	      "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736");
}

/* Header order given by the caller must not matter. */
Test(s3sign, header_order_irrelevant)
{
	struct s3_hdr h[] = { { "X-Amz-Date", SUITE_DATE }, { "host", "example.amazonaws.com" } };
	struct s3_sign_req r = {
		.method = "GET", .path = "/", .hdrs = h, .nhdrs = 2, .payload_hash = S3_EMPTY_SHA256
	};

	check(&r, SUITE_DATE, &suite_key,
	      SUITE_CRED
	      "SignedHeaders=host;x-amz-date, "
	      "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

Test(s3sign, s3_get_object_example)
{
	static const struct s3_sign_key k = {
		.access_key = "AKIAIOSFODNN7EXAMPLE",
		.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		.region = "us-east-1",
		.service = "s3",
	};
	struct s3_hdr h[] = { { "Host", "examplebucket.s3.amazonaws.com" },
			      { "Range", "bytes=0-9" },
			      { "x-amz-content-sha256", S3_EMPTY_SHA256 },
			      { "x-amz-date", "20130524T000000Z" } };
	struct s3_sign_req r = { .method = "GET",
				 .path = "/test.txt",
				 .hdrs = h,
				 .nhdrs = 4,
				 .payload_hash = S3_EMPTY_SHA256 };

	check(&r, "20130524T000000Z", &k,
	      "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
	      "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
	      "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

Test(s3sign, sha256_and_encoding)
{
	char h[S3_SHA256_HEX], out[64] = "";

	s3_sha256_hex("", 0, h);
	cr_assert_str_eq(h, S3_EMPTY_SHA256);
	s3_sha256_hex("abc", 3, h);
	cr_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	cr_assert_eq(s3_uri_encode("a b/c~d+e=", 1, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "a%20b/c~d%2Be%3D");
	out[0] = '\0';
	cr_assert_eq(s3_uri_encode("x/y", 0, out, sizeof(out)), 0);
	cr_assert_str_eq(out, "x%2Fy");
	out[0] = '\0';
	cr_assert_eq(s3_uri_encode("0123456789", 0, out, 8), -ENAMETOOLONG);
	s3_amz_date(1369353600LL, out);
	cr_assert_str_eq(out, "20130524T000000Z");
}
