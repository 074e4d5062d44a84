/*
 * wp_request.c - parsing the browser's requests with http-parser under hard
 * limits (header bytes, URL length, header count, buffered body) into the
 * request fields of a wp_conn. No sockets here: wp_conn.c recv()s into
 * c->in and calls wp_request_parse(); the unit tests and the fuzz target
 * (tests/fuzz/fuzz_request.c) feed bytes with wp_request_feed() through the
 * very same callbacks and limits.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "wp_conn.h"

#define WP_READ_CHUNK 16384

const char *wp_conn_header(const wp_conn *c, const char *name)
{
    size_t i;

    for (i = 0; i < c->nhdrs; i++)
        if (strcasecmp(c->hdrs[i].name, name) == 0)
            return c->hdrs[i].value;
    return NULL;
}

static int arena_put(wp_conn *c, const char *at, size_t len)
{
    if (c->arena_len + len + 1 > c->arena_cap) {
        c->err_status = 431;
        return -1;
    }
    memcpy(c->arena + c->arena_len, at, len);
    c->arena_len += len;
    return 0;
}

static int arena_end_string(wp_conn *c)
{
    if (c->arena_len + 1 > c->arena_cap) {
        c->err_status = 431;
        return -1;
    }
    c->arena[c->arena_len++] = '\0';
    return 0;
}

static int count_head(wp_conn *c, size_t len)
{
    c->head_bytes += len;
    if (c->head_bytes > c->cfg->max_header_bytes) {
        c->err_status = 431;
        return -1;
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    wp_conn *c = p->data;

    if (c->url_len + len > WP_MAX_URL) {
        c->err_status = 414;
        return -1;
    }
    c->url_len += len;
    if (count_head(c, len) != 0 || arena_put(c, at, len) != 0)
        return -1;
    return 0;
}

/* RFC 9110 tchar, without the locale. */
static int is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    wp_conn *c = p->data;
    size_t i;

    if (c->headers_done)
        return 0;                       /* trailer fields of a chunked body: ignored */
    /* Field names are tokens. http-parser (built non-strict) lets spaces
     * through and still frames "Content-Length : 5" by it, so such a name
     * would reach the server unlike the framing the wallet used (RFC 9112
     * 5.1: 400). */
    for (i = 0; i < len; i++) {
        if (!is_tchar((unsigned char)at[i])) {
            c->err_status = 400;
            return -1;
        }
    }
    if (c->in_value || c->nhdrs == 0) {
        /* a new field: end the URL or the previous value */
        if (arena_end_string(c) != 0)
            return -1;
        if (c->nhdrs >= WP_MAX_REQ_HDRS) {
            c->err_status = 431;
            return -1;
        }
        c->hdrs[c->nhdrs].name = c->arena + c->arena_len;
        c->hdrs[c->nhdrs].value = NULL;
        c->nhdrs++;
        c->in_value = 0;
        if (count_head(c, 4) != 0)      /* ": " and CRLF */
            return -1;
    }
    if (count_head(c, len) != 0 || arena_put(c, at, len) != 0)
        return -1;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    wp_conn *c = p->data;

    if (c->headers_done)
        return 0;
    if (!c->in_value) {
        if (arena_end_string(c) != 0)
            return -1;
        c->hdrs[c->nhdrs - 1].value = c->arena + c->arena_len;
        c->in_value = 1;
    }
    if (count_head(c, len) != 0 || arena_put(c, at, len) != 0)
        return -1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    wp_conn *c = p->data;
    const char *expect;

    if (arena_end_string(c) != 0)
        return -1;
    if (c->nhdrs > 0 && c->hdrs[c->nhdrs - 1].value == NULL)
        c->hdrs[c->nhdrs - 1].value = c->arena + c->arena_len - 1;   /* "" */
    c->headers_done = 1;
    c->method = http_method_str((enum http_method)p->method);
    c->http_major = p->http_major;
    c->http_minor = p->http_minor;
    if (count_head(c, strlen(c->method) + 13) != 0)
        return -1;
    if (p->method == HTTP_CONNECT)
        return 0;
    c->has_body = (p->flags & F_CHUNKED) != 0 || p->content_length != ULLONG_MAX;
    if (p->content_length != ULLONG_MAX && p->content_length > c->cfg->max_request_body) {
        c->err_status = 413;
        return -1;
    }
    expect = wp_conn_header(c, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 && c->http_major == 1 &&
        c->http_minor >= 1 && ((p->flags & F_CHUNKED) != 0 ||
                               (p->content_length != ULLONG_MAX && p->content_length > 0)))
        c->want_continue = 1;           /* wp_conn.c sends "100 Continue" */
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    wp_conn *c = p->data;

    if (len > c->cfg->max_request_body - c->body_len) {
        c->err_status = 413;
        return -1;
    }
    if (c->body_len + len > c->body_cap) {
        size_t cap = c->body_cap > 0 ? c->body_cap : 4096;
        char *nb;

        while (cap < c->body_len + len)
            cap = cap > c->cfg->max_request_body / 2 ? c->cfg->max_request_body : cap * 2;
        nb = realloc(c->body, cap);
        if (nb == NULL) {
            c->err_status = 413;
            return -1;
        }
        c->body = nb;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    wp_conn *c = p->data;

    c->message_done = 1;
    c->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1);     /* pipelined bytes stay in c->in */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void wp_request_global_init(const wp_config *cfg)
{
    /* The parser's own bound; ours (max_header_bytes, WP_MAX_URL) is tighter
     * for what it counts, this one also catches runs of whitespace. */
    http_parser_set_max_header_size((uint32_t)(cfg->max_header_bytes + WP_MAX_URL + 1024));
}

int wp_request_alloc(wp_conn *c)
{
    c->in_cap = WP_READ_CHUNK;
    c->arena_cap = c->cfg->max_header_bytes + WP_MAX_URL + 2 * WP_MAX_REQ_HDRS + 64;
    c->in = malloc(c->in_cap);
    c->arena = malloc(c->arena_cap);
    return c->in != NULL && c->arena != NULL ? 0 : -1;
}

void wp_request_free(wp_conn *c)
{
    free(c->in);
    free(c->arena);
    free(c->body);
    c->in = c->arena = c->body = NULL;
    c->in_cap = c->in_off = c->in_len = 0;
    c->arena_cap = c->arena_len = 0;
    c->body_cap = c->body_len = 0;
}

void wp_request_reset(wp_conn *c)
{
    c->arena_len = 0;
    c->head_bytes = 0;
    c->url = c->arena;
    c->url_len = 0;
    c->nhdrs = 0;
    c->in_value = 0;
    c->headers_done = 0;
    c->message_done = 0;
    c->err_status = 0;
    c->want_continue = 0;
    c->has_body = 0;
    c->method = NULL;
    c->http_major = 1;
    c->http_minor = 1;
    c->keep_alive = 0;
    c->body_len = 0;
    if (c->body_cap > 65536) {          /* do not keep big buffers around */
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

int wp_request_parse(wp_conn *c, int *status)
{
    if (c->in_off < c->in_len) {
        size_t used = http_parser_execute(&c->parser, &parser_settings, c->in + c->in_off,
                                          c->in_len - c->in_off);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);

        c->in_off += used;
        if (c->message_done) {
            if (e == HPE_PAUSED)
                http_parser_pause(&c->parser, 0);
            return 1;
        }
        if (e != HPE_OK) {
            *status = c->err_status != 0 ? c->err_status : e == HPE_HEADER_OVERFLOW ? 431 : 400;
            c->keep_alive = 0;
            return -1;
        }
    }
    if (c->in_off == c->in_len) {
        c->in_off = 0;
        c->in_len = 0;
    } else if (c->in_off > 0) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    return 0;
}

size_t wp_request_feed(wp_conn *c, const void *buf, size_t len)
{
    size_t room = c->in_cap - c->in_len;

    if (len > room)
        len = room;
    if (len > 0)
        memcpy(c->in + c->in_len, buf, len);
    c->in_len += len;
    return len;
}
