/* test_s3xml.c: parsing of S3's ListObjectsV2 pages and error documents. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "store/s3_xml.h"

struct seen {
	char keys[8][64];
	uint64_t sizes[8];
	int n;
	int stop_at;
};

static int collect(void *arg, const char *key, uint64_t size)
{
	struct seen *s = arg;

	if (s->n == 8)
		return -1;
	snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
	s->sizes[s->n++] = size;
	return s->stop_at && s->n == s->stop_at ? 42 : 0;
}

static const char page1[] =
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	"<Name>bucket</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>"
	"<IsTruncated>true</IsTruncated>"
	"<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
	"<Contents><Key>p/meta/00000001</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
	"<ETag>&quot;abc&quot;</ETag><Size>123</Size><StorageClass>STANDARD</StorageClass></Contents>"
	"<Contents><Key>p/segments/a&amp;b</Key><Size>8388608</Size></Contents>"
	"</ListBucketResult>";

Test(s3xml, list_page_with_token)
{
	struct seen s = { 0 };
	char token[S3_XML_TOKEN_MAX];
	int truncated = 0;

	cr_assert_eq(s3_xml_list(page1, strlen(page1), collect, &s, &truncated, token), 0);
	cr_assert_eq(truncated, 1);
	cr_assert_str_eq(token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
	cr_assert_eq(s.n, 2);
	cr_assert_str_eq(s.keys[0], "p/meta/00000001");
	cr_assert_eq(s.sizes[0], 123);
	cr_assert_str_eq(s.keys[1], "p/segments/a&b");
	cr_assert_eq(s.sizes[1], 8388608);
}

Test(s3xml, list_last_page_and_empty)
{
	static const char last[] = "<ListBucketResult><IsTruncated>false</IsTruncated>"
				   "<Contents><Key>k</Key><Size>0</Size></Contents>"
				   "</ListBucketResult>";
	static const char empty[] = "<ListBucketResult><KeyCount>0</KeyCount>"
				    "<IsTruncated>false</IsTruncated></ListBucketResult>";
	struct seen s = { 0 };
	char token[S3_XML_TOKEN_MAX];
	int truncated = 1;

	cr_assert_eq(s3_xml_list(last, strlen(last), collect, &s, &truncated, token), 0);
	cr_assert_eq(truncated, 0);
	cr_assert_str_eq(token, "");
	cr_assert_eq(s.n, 1);
	s.n = 0;
	cr_assert_eq(s3_xml_list(empty, strlen(empty), collect, &s, &truncated, token), 0);
	cr_assert_eq(s.n, 0);
}

Test(s3xml, list_callback_stops)
{
	struct seen s = { .stop_at = 1 };
	char token[S3_XML_TOKEN_MAX];
	int truncated;

	cr_assert_eq(s3_xml_list(page1, strlen(page1), collect, &s, &truncated, token), 42);
	cr_assert_eq(s.n, 1);
}

Test(s3xml, list_rejects_garbage)
{
	static const char trunc_no_token[] = "<ListBucketResult><IsTruncated>true</IsTruncated>"
					     "</ListBucketResult>";
	static const char bad_size[] = "<ListBucketResult><Contents><Key>k</Key><Size>x</Size>"
				       "</Contents></ListBucketResult>";
	static const char err[] = "<Error><Code>AccessDenied</Code></Error>";
	struct seen s = { 0 };
	char token[S3_XML_TOKEN_MAX];
	int truncated;

	cr_assert_eq(s3_xml_list("<a><b>", 6, collect, &s, &truncated, token), -EPROTO);
	cr_assert_eq(
		s3_xml_list(trunc_no_token, strlen(trunc_no_token), collect, &s, &truncated, token),
		-EPROTO);
	cr_assert_eq(s3_xml_list(bad_size, strlen(bad_size), collect, &s, &truncated, token),
		     -EPROTO);
	cr_assert_eq(s3_xml_list(err, strlen(err), collect, &s, &truncated, token), -EPROTO);
}

Test(s3xml, error_document)
{
	static const char doc[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<Error><Code>SignatureDoesNotMatch</Code>"
		"<Message>The request signature we calculated does not match</Message>"
		"<RequestId>tx000</RequestId><HostId>h</HostId></Error>";
	char code[64], msg[16];

	cr_assert_eq(s3_xml_error(doc, strlen(doc), code, sizeof(code), msg, sizeof(msg)), 0);
	cr_assert_str_eq(code, "SignatureDoesNotMatch");
	cr_assert_str_eq(msg, "The request sig"); /* truncated to the buffer */
	cr_assert_eq(s3_xml_error(page1, strlen(page1), code, sizeof(code), msg, sizeof(msg)),
		     -EPROTO);
	cr_assert_str_eq(code, "");
	cr_assert_eq(s3_xml_error("not xml", 7, code, sizeof(code), msg, sizeof(msg)), -EPROTO);
}
