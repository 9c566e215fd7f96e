/* s3_xml.c: parse S3's listing and error documents with expat (see
 * s3_xml.h).  Without namespace processing, element names arrive bare
 * ("Key"), whatever xmlns the server declares. */
#include "store/s3_xml.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

#define MAX_DEPTH 8
#define TEXT_MAX (S3_XML_TOKEN_MAX + 1)

/* Parser state shared by both documents: the element path and the text of
 * the innermost element. */
struct xml_state {
	XML_Parser p;
	const char *path[MAX_DEPTH]; /* interned names of the open elements we care about */
	int depth;
	char text[TEXT_MAX];
	size_t text_len;
	int too_long;
	int rc;

	/* listing */
	s3_xml_key_cb cb;
	void *arg;
	char key[S3_XML_KEY_MAX + 1];
	uint64_t size;
	int have_key;
	int truncated;
	int is_list;
	char *token;

	/* error */
	char *code, *msg;
	size_t codelen, msglen;
	int is_error;
};

static const char *const names[] = {
	"ListBucketResult",	 "Contents", "Key",  "Size",	"IsTruncated",
	"NextContinuationToken", "Error",    "Code", "Message", NULL
};

static const char *intern(const char *name)
{
	for (const char *const *n = names; *n; n++)
		if (strcmp(*n, name) == 0)
			return *n;
	return "";
}

/* True when the open elements are exactly a, b, c (NULL-ended). */
static int at(const struct xml_state *s, const char *a, const char *b, const char *c)
{
	const char *want[3] = { a, b, c };
	int n = c ? 3 : b ? 2 : 1;

	if (s->depth != n)
		return 0;
	for (int i = 0; i < n; i++)
		if (s->path[i] != intern(want[i]))
			return 0;
	return 1;
}

static void XMLCALL on_start(void *data, const XML_Char *name, const XML_Char **attrs)
{
	struct xml_state *s = data;

	(void)attrs;
	if (s->depth < MAX_DEPTH)
		s->path[s->depth] = intern(name);
	s->depth++;
	s->text_len = 0;
	s->too_long = 0;
	if (s->depth == 1 && s->path[0] == intern("Error"))
		s->is_error = 1;
	if (s->depth == 1 && s->path[0] == intern("ListBucketResult"))
		s->is_list = 1;
	if (at(s, "ListBucketResult", "Contents", NULL)) {
		s->have_key = 0;
		s->size = 0;
	}
}

static void XMLCALL on_text(void *data, const XML_Char *t, int len)
{
	struct xml_state *s = data;

	if (s->text_len + (size_t)len >= sizeof(s->text)) {
		s->too_long = 1;
		return;
	}
	memcpy(s->text + s->text_len, t, (size_t)len);
	s->text_len += (size_t)len;
}

static void copy_text(const struct xml_state *s, char *out, size_t outlen)
{
	size_t n = s->text_len < outlen ? s->text_len : outlen - 1;

	memcpy(out, s->text, n);
	out[n] = '\0';
}

static void fail(struct xml_state *s, int rc)
{
	if (!s->rc)
		s->rc = rc;
	XML_StopParser(s->p, XML_FALSE);
}

static void list_end(struct xml_state *s)
{
	char *end;

	if (at(s, "ListBucketResult", "Contents", "Key")) {
		if (s->too_long || s->text_len > S3_XML_KEY_MAX) {
			fail(s, -EPROTO);
			return;
		}
		copy_text(s, s->key, sizeof(s->key));
		s->have_key = 1;
	} else if (at(s, "ListBucketResult", "Contents", "Size")) {
		s->text[s->text_len] = '\0';
		s->size = strtoull(s->text, &end, 10);
		if (end == s->text || *end) {
			fail(s, -EPROTO);
			return;
		}
	} else if (at(s, "ListBucketResult", "Contents", NULL)) {
		int rc;

		if (!s->have_key) {
			fail(s, -EPROTO);
			return;
		}
		rc = s->cb(s->arg, s->key, s->size);
		if (rc)
			fail(s, rc);
	} else if (at(s, "ListBucketResult", "IsTruncated", NULL)) {
		s->truncated = s->text_len == 4 && memcmp(s->text, "true", 4) == 0;
	} else if (at(s, "ListBucketResult", "NextContinuationToken", NULL)) {
		if (s->too_long) {
			fail(s, -EPROTO);
			return;
		}
		copy_text(s, s->token, S3_XML_TOKEN_MAX);
	}
}

static void XMLCALL on_end_list(void *data, const XML_Char *name)
{
	struct xml_state *s = data;

	(void)name;
	list_end(s);
	s->depth--;
	s->text_len = 0;
}

static void XMLCALL on_end_error(void *data, const XML_Char *name)
{
	struct xml_state *s = data;

	(void)name;
	if (at(s, "Error", "Code", NULL))
		copy_text(s, s->code, s->codelen);
	else if (at(s, "Error", "Message", NULL))
		copy_text(s, s->msg, s->msglen);
	s->depth--;
	s->text_len = 0;
}

static int parse(struct xml_state *s, const char *xml, size_t len, XML_EndElementHandler end)
{
	enum XML_Status st;

	s->p = XML_ParserCreate(NULL);
	if (!s->p)
		return -ENOMEM;
	XML_SetUserData(s->p, s);
	XML_SetElementHandler(s->p, on_start, end);
	XML_SetCharacterDataHandler(s->p, on_text);
	st = XML_Parse(s->p, xml, (int)len, XML_TRUE);
	XML_ParserFree(s->p);
	if (s->rc)
		return s->rc;
	return st == XML_STATUS_OK ? 0 : -EPROTO;
}

int s3_xml_list(const char *xml, size_t len, s3_xml_key_cb cb, void *arg, int *truncated,
		char *next_token)
{
	struct xml_state *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	next_token[0] = '\0';
	s->cb = cb;
	s->arg = arg;
	s->token = next_token;
	rc = parse(s, xml, len, on_end_list);
	*truncated = s->truncated;
	if (rc == 0 && !s->is_list)
		rc = -EPROTO;
	if (rc == 0 && s->truncated && !next_token[0])
		rc = -EPROTO;
	free(s);
	return rc;
}

int s3_xml_error(const char *xml, size_t len, char *code, size_t codelen, char *msg, size_t msglen)
{
	struct xml_state *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	code[0] = '\0';
	msg[0] = '\0';
	s->code = code;
	s->codelen = codelen;
	s->msg = msg;
	s->msglen = msglen;
	rc = parse(s, xml, len, on_end_error);
	if (rc == 0 && !s->is_error)
		rc = -EPROTO;
	if (rc < 0) {
		code[0] = '\0';
		msg[0] = '\0';
	}
	free(s);
	return rc;
}
