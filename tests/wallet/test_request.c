/* The browser-request parser (wp_request.c through wp_conn.h): forms of the
 * request target, headers, bodies (Content-Length and chunked), pipelining,
 * partial reads, Expect: 100-continue and every refusal (400, 413, 414,
 * 431). No sockets: bytes go in with wp_request_feed(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "wp_conn.h"
#include "wp_tests.h"

static wp_config cfg;
static wp_conn *c;

/* A fresh connection with the default limits changed by hdr_max/body_max
 * (0 = default). */
static void open_conn(size_t hdr_max, size_t body_max)
{
    wp_config_defaults(&cfg);
    if (hdr_max != 0)
        cfg.max_header_bytes = hdr_max;
    if (body_max != 0)
        cfg.max_request_body = body_max == (size_t)-1 ? 0 : body_max;
    c = calloc(1, sizeof(*c));
    CU_ASSERT_PTR_NOT_NULL_FATAL(c);
    c->fd = -1;
    c->cfg = &cfg;
    wp_request_global_init(&cfg);
    CU_ASSERT_EQUAL_FATAL(wp_request_alloc(c), 0);
    wp_request_reset(c);
}

static void close_conn(void)
{
    wp_request_free(c);
    free(c);
    c = NULL;
}

/* Feeds len bytes of s in pieces of at most step bytes (0 = all at once) and
 * parses after each; returns the first non-zero parse result (1 or -1; the
 * refusal status in *status) or 0 when all was fed without completing. */
static int feed(const char *s, size_t len, size_t step, int *status)
{
    size_t off = 0;
    int st = 0, rc = 0;

    while (rc == 0) {
        size_t n = step == 0 || len - off < step ? len - off : step;

        off += wp_request_feed(c, s + off, n);
        rc = wp_request_parse(c, &st);
        if (rc == 0 && off == len)
            break;
    }
    if (status != NULL)
        *status = st;
    return rc;
}

static int feed_str(const char *s, int *status)
{
    return feed(s, strlen(s), 0, status);
}

/* Parses a request that must be refused; returns the status. */
static int refused(const char *s, size_t len)
{
    int st = 0;

    CU_ASSERT_EQUAL(feed(s, len, 0, &st), -1);
    CU_ASSERT_EQUAL(c->keep_alive, 0);
    return st;
}

static void test_absolute_form(void)
{
    open_conn(0, 0);
    CU_ASSERT_EQUAL_FATAL(feed_str("GET http://news.example/a?b=1 HTTP/1.1\r\n"
                                   "Host: news.example\r\nAccept: */*\r\n\r\n", NULL), 1);
    CU_ASSERT_STRING_EQUAL(c->method, "GET");
    CU_ASSERT_STRING_EQUAL(c->url, "http://news.example/a?b=1");
    CU_ASSERT_EQUAL(c->url_len, strlen("http://news.example/a?b=1"));
    CU_ASSERT_EQUAL(c->nhdrs, 2);
    CU_ASSERT_STRING_EQUAL(c->hdrs[0].name, "Host");
    CU_ASSERT_STRING_EQUAL(c->hdrs[0].value, "news.example");
    CU_ASSERT_STRING_EQUAL(wp_conn_header(c, "accept"), "*/*");
    CU_ASSERT_PTR_NULL(wp_conn_header(c, "Cookie"));
    CU_ASSERT_EQUAL(c->http_major, 1);
    CU_ASSERT_EQUAL(c->http_minor, 1);
    CU_ASSERT_EQUAL(c->keep_alive, 1);
    CU_ASSERT_EQUAL(c->has_body, 0);
    CU_ASSERT_EQUAL(c->body_len, 0);
    CU_ASSERT_EQUAL(c->want_continue, 0);
    close_conn();
}

static void test_origin_form(void)
{
    open_conn(0, 0);
    CU_ASSERT_EQUAL_FATAL(feed_str("HEAD /api/state HTTP/1.0\r\nHost: 127.0.0.1:8402\r\n\r\n",
                                   NULL), 1);
    CU_ASSERT_STRING_EQUAL(c->method, "HEAD");
    CU_ASSERT_STRING_EQUAL(c->url, "/api/state");
    CU_ASSERT_EQUAL(c->http_minor, 0);
    CU_ASSERT_EQUAL(c->keep_alive, 0);      /* HTTP/1.0 without keep-alive */
    close_conn();
    open_conn(0, 0);
    CU_ASSERT_EQUAL_FATAL(feed_str("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", NULL), 1);
    CU_ASSERT_STRING_EQUAL(c->url, "/");
    CU_ASSERT_EQUAL(c->keep_alive, 0);
    close_conn();
}

static void test_connect(void)
{
    open_conn(0, 0);
    CU_ASSERT_EQUAL_FATAL(feed_str("CONNECT news.example:443 HTTP/1.1\r\n"
                                   "Host: news.example:443\r\n\r\n\x16\x03\x01", NULL), 1);
    CU_ASSERT_STRING_EQUAL(c->method, "CONNECT");
    CU_ASSERT_STRING_EQUAL(c->url, "news.example:443");
    /* the tunnel's first bytes stay in the buffer for wp_tunnel.c */
    CU_ASSERT_EQUAL(c->in_len - c->in_off, 3);
    close_conn();
}

static void test_headers(void)
{
    open_conn(0, 0);
    CU_ASSERT_EQUAL_FATAL(feed_str("GET / HTTP/1.1\r\nX-Empty:\r\nX-B:  v w \r\n"
                                   "X-Last:\r\n\r\n", NULL), 1);
    CU_ASSERT_EQUAL_FATAL(c->nhdrs, 3);
    CU_ASSERT_STRING_EQUAL(c->hdrs[0].name, "X-Empty");
    CU_ASSERT_STRING_EQUAL(c->hdrs[0].value, "");
    CU_ASSERT_STRING_EQUAL(c->hdrs[1].name, "X-B");
    CU_ASSERT_STRING_EQUAL(c->hdrs[1].value, "v w ");
    CU_ASSERT_STRING_EQUAL(c->hdrs[2].name, "X-Last");
    CU_ASSERT_STRING_EQUAL(c->hdrs[2].value, "");
    close_conn();
}

static void test_content_length_body(void)
{
    open_conn(0, 10);
    CU_ASSERT_EQUAL_FATAL(feed_str("POST http://a.example/ HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
                                   "0123456789", NULL), 1);
    CU_ASSERT_EQUAL(c->has_body, 1);
    CU_ASSERT_EQUAL_FATAL(c->body_len, 10);
    CU_ASSERT_EQUAL(memcmp(c->body, "0123456789", 10), 0);
    close_conn();
    open_conn(0, 0);
    CU_ASSERT_EQUAL_FATAL(feed_str("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", NULL), 1);
    CU_ASSERT_EQUAL(c->has_body, 1);
    CU_ASSERT_EQUAL(c->body_len, 0);
    close_conn();
}

static void test_chunked_body(void)
{
    open_conn(0, 0);
    CU_ASSERT_EQUAL_FATAL(feed_str("POST /api/x HTTP/1.1\r\nHost: a\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n"
                                   "5\r\nhello\r\n3;ext=1\r\n, w\r\n0\r\nX-Trailer: t\r\n\r\n",
                                   NULL), 1);
    CU_ASSERT_EQUAL(c->has_body, 1);
    CU_ASSERT_EQUAL_FATAL(c->body_len, 8);
    CU_ASSERT_EQUAL(memcmp(c->body, "hello, w", 8), 0);
    CU_ASSERT_EQUAL(c->nhdrs, 2);             /* trailer fields are ignored */
    CU_ASSERT_PTR_NULL(wp_conn_header(c, "X-Trailer"));
    close_conn();
}

static void test_pipelined(void)
{
    static const char two[] = "POST http://a.example/p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                              "GET http://b.example/g HTTP/1.1\r\nHost: b.example\r\n\r\n";

    open_conn(0, 0);
    CU_ASSERT_EQUAL_FATAL(feed_str(two, NULL), 1);
    CU_ASSERT_STRING_EQUAL(c->url, "http://a.example/p");
    CU_ASSERT_EQUAL(c->body_len, 3);
    CU_ASSERT(c->in_off < c->in_len);         /* the second request waits in the buffer */
    wp_request_reset(c);
    CU_ASSERT_EQUAL_FATAL(feed("", 0, 0, NULL), 1);
    CU_ASSERT_STRING_EQUAL(c->method, "GET");
    CU_ASSERT_STRING_EQUAL(c->url, "http://b.example/g");
    CU_ASSERT_STRING_EQUAL(wp_conn_header(c, "Host"), "b.example");
    CU_ASSERT_EQUAL(c->body_len, 0);
    CU_ASSERT_EQUAL(c->has_body, 0);
    wp_request_reset(c);
    CU_ASSERT_EQUAL(feed("", 0, 0, NULL), 0);  /* nothing more */
    CU_ASSERT_EQUAL(c->in_len, 0);
    close_conn();
}

/* Every split of a request into two reads parses the same. */
static void test_partial_reads(void)
{
    static const char req[] = "POST http://a.example/x HTTP/1.1\r\nHost: a.example\r\n"
                              "Transfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n0\r\n\r\n";
    size_t len = sizeof(req) - 1, cut, step;

    for (cut = 0; cut <= len; cut++) {
        int rc;

        open_conn(0, 0);
        (void)wp_request_feed(c, req, cut);
        rc = wp_request_parse(c, &(int){ 0 });
        if (rc == 0)
            rc = feed(req + cut, len - cut, 0, NULL);
        CU_ASSERT_EQUAL(rc, 1);
        if (rc == 1) {
            CU_ASSERT_STRING_EQUAL(c->url, "http://a.example/x");
            CU_ASSERT_STRING_EQUAL(wp_conn_header(c, "host"), "a.example");
            CU_ASSERT(c->body_len == 4 && memcmp(c->body, "wiki", 4) == 0);
        }
        close_conn();
    }
    for (step = 1; step <= 7; step++) {
        open_conn(0, 0);
        CU_ASSERT_EQUAL(feed(req, len, step, NULL), 1);
        CU_ASSERT_STRING_EQUAL(wp_conn_header(c, "Transfer-Encoding"), "chunked");
        close_conn();
    }
}

static void test_expect_continue(void)
{
    open_conn(0, 0);
    CU_ASSERT_EQUAL(feed_str("PUT http://a.example/ HTTP/1.1\r\nExpect: 100-Continue\r\n"
                             "Content-Length: 3\r\n\r\n", NULL), 0);
    CU_ASSERT_EQUAL(c->want_continue, 1);
    c->want_continue = 0;
    CU_ASSERT_EQUAL(feed_str("abc", NULL), 1);
    CU_ASSERT_EQUAL(c->want_continue, 0);
    close_conn();
    /* not for HTTP/1.0, not without a body */
    open_conn(0, 0);
    CU_ASSERT_EQUAL(feed_str("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n"
                             "Content-Length: 3\r\n\r\n", NULL), 0);
    CU_ASSERT_EQUAL(c->want_continue, 0);
    close_conn();
    open_conn(0, 0);
    CU_ASSERT_EQUAL(feed_str("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", NULL), 1);
    CU_ASSERT_EQUAL(c->want_continue, 0);
    close_conn();
}

static void test_body_limit_413(void)
{
    static const char chunked[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                  "6\r\n012345\r\n5\r\n6789a\r\n0\r\n\r\n";

    open_conn(0, 10);
    CU_ASSERT_EQUAL(refused("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 39), 413);
    CU_ASSERT_EQUAL(c->err_status, 413);
    close_conn();
    open_conn(0, 10);
    CU_ASSERT_EQUAL(refused(chunked, sizeof(chunked) - 1), 413);
    CU_ASSERT(c->body_len <= 10);
    close_conn();
    open_conn(0, 11);                          /* exactly the limit is accepted */
    CU_ASSERT_EQUAL(feed_str(chunked, NULL), 1);
    CU_ASSERT_EQUAL(c->body_len, 11);
    close_conn();
    open_conn(0, (size_t)-1);                  /* MaxRequestBody 0 */
    CU_ASSERT_EQUAL(refused("POST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 39), 413);
    close_conn();
    open_conn(0, (size_t)-1);
    CU_ASSERT_EQUAL(feed_str("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", NULL), 1);
    close_conn();
}

static void test_url_limit_414(void)
{
    size_t cap = WP_MAX_URL + 64;
    char *r = malloc(cap);

    CU_ASSERT_PTR_NOT_NULL_FATAL(r);
    memcpy(r, "GET /", 5);
    memset(r + 5, 'a', WP_MAX_URL - 1);        /* a URL of exactly WP_MAX_URL bytes */
    strcpy(r + 4 + WP_MAX_URL, " HTTP/1.1\r\n\r\n");
    open_conn(0, 0);
    CU_ASSERT_EQUAL(feed(r, strlen(r), 1000, NULL), 1);
    CU_ASSERT_EQUAL(c->url_len, WP_MAX_URL);
    CU_ASSERT_EQUAL(strlen(c->url), WP_MAX_URL);
    close_conn();
    memmove(r + 5, r + 4, strlen(r + 4) + 1);  /* one more */
    open_conn(0, 0);
    CU_ASSERT_EQUAL(refused(r, strlen(r)), 414);
    close_conn();
    free(r);
}

static void test_header_limit_431(void)
{
    char r[4096];
    size_t n, i;

    /* header section bytes: request line and fields count against MaxHeaderSize */
    n = (size_t)snprintf(r, sizeof r, "GET / HTTP/1.1\r\nX-Pad: ");
    memset(r + n, 'p', 1100);
    strcpy(r + n + 1100, "\r\n\r\n");
    open_conn(1024, 0);
    CU_ASSERT_EQUAL(refused(r, strlen(r)), 431);
    CU_ASSERT_EQUAL(c->err_status, 431);
    close_conn();
    open_conn(2048, 0);
    CU_ASSERT_EQUAL(feed_str(r, NULL), 1);
    CU_ASSERT(c->head_bytes <= 2048);
    close_conn();

    /* more than WP_MAX_REQ_HDRS fields */
    open_conn(0, 0);
    CU_ASSERT_EQUAL(wp_request_feed(c, "GET / HTTP/1.1\r\n", 16), 16);
    for (i = 0; i < WP_MAX_REQ_HDRS; i++) {
        n = (size_t)snprintf(r, sizeof r, "X-%zu: v\r\n", i);
        CU_ASSERT_EQUAL(feed(r, n, 0, NULL), 0);
    }
    CU_ASSERT_EQUAL(c->nhdrs, WP_MAX_REQ_HDRS);
    CU_ASSERT_EQUAL(refused("X-More: v\r\n\r\n", 13), 431);
    close_conn();
    open_conn(0, 0);                           /* exactly WP_MAX_REQ_HDRS is accepted */
    CU_ASSERT_EQUAL(wp_request_feed(c, "GET / HTTP/1.1\r\n", 16), 16);
    for (i = 0; i < WP_MAX_REQ_HDRS; i++) {
        n = (size_t)snprintf(r, sizeof r, "X-%zu: v\r\n", i);
        CU_ASSERT_EQUAL(feed(r, n, 0, NULL), 0);
    }
    CU_ASSERT_EQUAL(feed_str("\r\n", NULL), 1);
    CU_ASSERT_STRING_EQUAL(wp_conn_header(c, "x-255"), "v");
    close_conn();
}

static void test_bad_requests_400(void)
{
    static const char *const bad[] = {
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            "3\r\nabc\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00",
        "FOO / HTTP/1.1\r\n\r\n",
    };
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        open_conn(0, 0);
        if (refused(bad[i], strlen(bad[i])) != 400)
            fprintf(stderr, "\n  request %zu was not refused with 400\n", i);
        CU_ASSERT_EQUAL(c->err_status, 0);     /* http-parser refused it, not a limit */
        close_conn();
    }
}

/* Field names must be tokens: whitespace before the colon would let a
 * "Content-Length :" or "Transfer-Encoding :" reach the server that
 * http-parser framed differently. */
static void test_field_names(void)
{
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nX\"y: v\r\n\r\n",
    };
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        open_conn(0, 0);
        CU_ASSERT_EQUAL(refused(bad[i], strlen(bad[i])), 400);
        close_conn();
    }
    open_conn(0, 0);
    CU_ASSERT_EQUAL(feed_str("GET / HTTP/1.1\r\nX-a.b_c~!#$%&'*+^`|: v\r\n\r\n", NULL), 1);
    CU_ASSERT_STRING_EQUAL(wp_conn_header(c, "x-A.b_c~!#$%&'*+^`|"), "v");
    close_conn();
    /* trailer fields are not looked at */
    open_conn(0, 0);
    CU_ASSERT_EQUAL(feed_str("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "1\r\nx\r\n0\r\nT: t\r\n\r\n", NULL), 1);
    close_conn();
}

static void test_feed_room(void)
{
    char *big = malloc(40000);

    CU_ASSERT_PTR_NOT_NULL_FATAL(big);
    memset(big, 'x', 40000);
    open_conn(0, 0);
    CU_ASSERT(wp_request_feed(c, big, 40000) < 40000);     /* only what fits */
    CU_ASSERT_EQUAL(c->in_len, c->in_cap);
    CU_ASSERT_EQUAL(wp_request_feed(c, big, 1), 0);
    close_conn();
    free(big);
}

int register_request_tests(void)
{
    CU_pSuite s = CU_add_suite("wp_request", NULL, NULL);

    if (s == NULL || CU_add_test(s, "absolute-form", test_absolute_form) == NULL
        || CU_add_test(s, "origin-form", test_origin_form) == NULL
        || CU_add_test(s, "CONNECT authority-form", test_connect) == NULL
        || CU_add_test(s, "header fields, empty values", test_headers) == NULL
        || CU_add_test(s, "Content-Length body", test_content_length_body) == NULL
        || CU_add_test(s, "chunked body and trailers", test_chunked_body) == NULL
        || CU_add_test(s, "pipelined requests", test_pipelined) == NULL
        || CU_add_test(s, "partial reads", test_partial_reads) == NULL
        || CU_add_test(s, "Expect: 100-continue", test_expect_continue) == NULL
        || CU_add_test(s, "413 body limit", test_body_limit_413) == NULL
        || CU_add_test(s, "414 URL limit", test_url_limit_414) == NULL
        || CU_add_test(s, "431 header limits", test_header_limit_431) == NULL
        || CU_add_test(s, "400 malformed and ambiguous", test_bad_requests_400) == NULL
        || CU_add_test(s, "400 field names that are not tokens", test_field_names) == NULL
        || CU_add_test(s, "feeding only what fits", test_feed_room) == NULL)
        return -1;
    return 0;
}
