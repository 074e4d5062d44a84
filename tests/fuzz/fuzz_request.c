/*
 * libFuzzer target for the browser-request parser (wallet-proxy/
 * wp_request.c: http-parser with the wallet's limits), fed the way the
 * socket path feeds it: bytes appended to the connection's read buffer as
 * far as it has room, split at a point the fuzzer chooses (partial reads),
 * pipelined requests parsed one after the other.
 *
 * Input: byte 0 picks the limits (bits 0-1 MaxHeaderSize, bits 2-3
 * MaxRequestBody) and bit 4 turns on run-length expansion (0xff n c: byte c
 * repeated 64 * (n + 1) times, so URLs beyond WP_MAX_URL fit in -max_len);
 * bytes 1-2 are the split point; the rest is the byte stream.
 *
 * Properties checked beyond "no crash, no leak, no out-of-bounds access":
 *  - every accepted request is within the limits: URL length, header
 *    section size (recounted from the fields), header count, body size;
 *    its URL, names and values are NUL-terminated inside the arena;
 *  - a refused one carries 400, 413, 414 or 431.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "wp_conn.h"

#define EXPAND_MAX (256u * 1024)

static void in_arena(const wp_conn *c, const char *s)
{
    if (s == NULL || s < c->arena || s >= c->arena + c->arena_len
        || memchr(s, '\0', (size_t)(c->arena + c->arena_len - s)) == NULL)
        abort();
}

static void check_request(const wp_conn *c)
{
    size_t i, head;

    if (!c->headers_done || !c->message_done || c->method == NULL)
        abort();
    if (c->arena_len > c->arena_cap)
        abort();
    in_arena(c, c->url);
    if (c->url_len > WP_MAX_URL || strlen(c->url) != c->url_len)
        abort();
    if (c->nhdrs > WP_MAX_REQ_HDRS)
        abort();
    head = c->url_len + strlen(c->method) + 13;
    for (i = 0; i < c->nhdrs; i++) {
        in_arena(c, c->hdrs[i].name);
        in_arena(c, c->hdrs[i].value);
        head += strlen(c->hdrs[i].name) + strlen(c->hdrs[i].value) + 4;
    }
    if (head > c->cfg->max_header_bytes || c->head_bytes > c->cfg->max_header_bytes)
        abort();
    if (c->body_len > c->cfg->max_request_body || (c->body_len > 0 && c->body == NULL)
        || c->body_len > c->body_cap)
        abort();
    if (c->body_len > 0 && !c->has_body)
        abort();
}

/* Expands 0xff n c runs into a malloc'ed buffer; *len in and out. */
static uint8_t *expand(const uint8_t *d, size_t *len)
{
    size_t i, n = 0, cap = *len * 2 + 16;
    uint8_t *o = malloc(cap), *t;

    if (o == NULL)
        return NULL;
    for (i = 0; i < *len; i++) {
        size_t run = 1;
        uint8_t b = d[i];

        if (d[i] == 0xff && i + 2 < *len) {
            run = 64u * ((size_t)d[i + 1] + 1);
            b = d[i + 2];
            i += 2;
        }
        if (n + run > EXPAND_MAX)
            break;
        if (n + run > cap) {
            cap = (n + run) * 2;
            t = realloc(o, cap);
            if (t == NULL) {
                free(o);
                return NULL;
            }
            o = t;
        }
        memset(o + n, b, run);
        n += run;
    }
    *len = n;
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t head_max[4] = { 1024, 4096, 16384, 65536 };
    static const size_t body_max[4] = { 0, 16, 1024, 65536 };
    static wp_config cfg;
    wp_conn *c;
    uint8_t *buf;
    size_t len, split, off = 0, rounds = 0;

    if (size < 3)
        return 0;
    memset(&cfg, 0, sizeof cfg);     /* the parser reads only the two limits */
    cfg.max_header_bytes = head_max[data[0] & 3];
    cfg.max_request_body = body_max[(data[0] >> 2) & 3];
    len = size - 3;
    if (data[0] & 0x10) {
        buf = expand(data + 3, &len);
    } else {
        buf = malloc(len + 1);
        if (buf != NULL)
            memcpy(buf, data + 3, len);
    }
    if (buf == NULL)
        return 0;
    split = ((size_t)data[1] << 8 | data[2]) % (len + 1);
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto out;
    c->fd = -1;
    c->cfg = &cfg;
    wp_request_global_init(&cfg);
    if (wp_request_alloc(c) != 0)
        goto out;
    wp_request_reset(c);
    for (;;) {
        size_t end = off < split ? split : len;
        int status = 0, rc;

        if (++rounds > 4 * len + 16)
            abort();                    /* no progress */
        off += wp_request_feed(c, buf + off, end - off);
        rc = wp_request_parse(c, &status);
        if (c->want_continue) {
            if (!c->headers_done)
                abort();
            c->want_continue = 0;
        }
        if (rc == 1) {
            check_request(c);
            wp_request_reset(c);
            continue;
        }
        if (rc < 0) {
            if (status != 400 && status != 413 && status != 414 && status != 431)
                abort();
            break;
        }
        if (rc != 0 || c->in_len != 0)
            abort();
        if (off == len)
            break;
    }
out:
    if (c != NULL)
        wp_request_free(c);
    free(c);
    free(buf);
    return 0;
}
