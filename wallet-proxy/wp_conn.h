/*
 * wp_conn.h - the proxy core's internals, shared by wp_main.c (accepting),
 * wp_conn.c (one thread per browser connection: parsing, limits, routing,
 * the wallet's own pages), wp_forward.c (http:// requests through libcurl
 * with the payment loop) and wp_tunnel.c (CONNECT).
 *
 * A wp_conn belongs to its connection thread; nothing in it is shared. The
 * request fields are valid from the end of parsing until the next request
 * is read.
 */
#ifndef WP_CONN_H
#define WP_CONN_H

#include <stddef.h>
#include <sys/socket.h>
#include <curl/curl.h>
#include <http_parser.h>
#include "wp.h"
#include "wp_pay.h"

#define WP_MAX_URL        8192    /* longer request targets get 414 */
#define WP_MAX_REQ_HDRS   256     /* more header fields get 431 */
#define WP_VIA_PSEUDONYM  "mpwallet"
#define WP_VIA            "1.1 " WP_VIA_PSEUDONYM

typedef struct wp_conn {
    int fd;                       /* the browser's socket */
    char peer[64];                /* "addr:port" for logs */
    const wp_config *cfg;
    wp_wallet *w;

    http_parser parser;
    char *in;                     /* read buffer: in[in_off .. in_len) not yet parsed */
    size_t in_off, in_len, in_cap;

    /* the current request (wp_conn.c fills these) */
    char *arena;                  /* URL, header names and values, NUL-terminated */
    size_t arena_len, arena_cap;
    size_t head_bytes;            /* request line + header bytes so far */
    const char *url;              /* request target as sent */
    size_t url_len;
    wp_hdr hdrs[WP_MAX_REQ_HDRS];
    size_t nhdrs;
    int in_value;                 /* last header callback was a value */
    int headers_done, message_done;
    int err_status;               /* 400/413/414/431 found while parsing, or 0 */
    int want_continue;            /* the request expects "100 Continue": wp_conn.c sends it */
    char *body;                   /* the buffered request body */
    size_t body_len, body_cap;
    int has_body;                 /* Content-Length or chunked was sent */
    const char *method;           /* http_method_str() */
    unsigned short http_major, http_minor;
    int keep_alive;               /* the browser connection may carry another request */

    /* upstream (wp_forward.c): one easy handle per connection, reused */
    CURL *curl;
    struct curl_slist *resolve;
} wp_conn;

/* ---- wp_conn.c: the server side, called by wp_main.c ---- */

/* Once, before accepting: remembers cfg and w (both outlive every
 * connection) and sets the parser's limits. */
void wp_conn_server_init(const wp_config *cfg, wp_wallet *w);
/* Takes ownership of fd: checks the Allow list and the client limit and
 * starts a detached connection thread, or refuses with 403/503. */
void wp_conn_accepted(int fd, const struct sockaddr *peer, socklen_t peerlen);
/* Asks every connection thread to finish, then waits up to seconds for them;
 * returns the number still running. */
unsigned wp_conn_shutdown(unsigned seconds);
/* True once wp_conn_shutdown has been called. */
int wp_conn_stopping(void);

/* ---- wp_conn.c: answering the browser ---- */

/* Writes all of buf; 0, or -1 when the browser is gone (then c->keep_alive = 0). */
int wp_conn_send(wp_conn *c, const void *buf, size_t len);
/* Writes pg as a complete response (no body for HEAD); 0 or -1. */
int wp_conn_send_page(wp_conn *c, const wp_page *pg);
/* A small HTML error page: status, its reason phrase and msg (escaped). */
int wp_conn_send_error(wp_conn *c, int status, const char *msg);
/* The reason phrase for status ("Not Found"), "Unknown" if none. */
const char *wp_status_reason(int status);
/* The "Connection: ..." line this response needs ("" for HTTP/1.1 keep-alive). */
const char *wp_conn_connection_line(const wp_conn *c);

/* ---- wp_request.c: parsing requests (no sockets; fed by wp_conn.c, the
 * unit tests and tests/fuzz/fuzz_request.c) ---- */

/* Once, before parsing: sets http-parser's own header bound for cfg. */
void wp_request_global_init(const wp_config *cfg);
/* Allocates c's read buffer and header arena for c->cfg's limits (c->cfg
 * set, the rest zeroed). 0, -1 on ENOMEM (wp_request_free still needed). */
int wp_request_alloc(wp_conn *c);
/* Frees c's read buffer, arena and body; c may be reused after alloc. */
void wp_request_free(wp_conn *c);
/* Starts the next request: clears the request fields; unparsed bytes in
 * c->in (pipelined requests) stay. */
void wp_request_reset(wp_conn *c);
/* Parses c->in[in_off .. in_len) into the current request. 1: complete
 * (c->in_off is past it; pipelined bytes stay); 0: more bytes needed (the
 * buffer is then empty); -1: refused, *status is 400, 413, 414 or 431 and
 * c->err_status says whether a limit (not http-parser) refused it. Check
 * c->want_continue after every call. */
int wp_request_parse(wp_conn *c, int *status);
/* Appends up to len bytes of buf to c->in as recv() would; returns how
 * many fitted (for tests and fuzz targets). */
size_t wp_request_feed(wp_conn *c, const void *buf, size_t len);
/* The value of the first request header called name, or NULL. */
const char *wp_conn_header(const wp_conn *c, const char *name);

/* ---- wp_forward.c ---- */

/* Splits an absolute http:// URL: authority (lower case, ":80" dropped, no
 * userinfo) into host (cap bytes) and a malloc'ed origin-form target (path
 * and query as sent, fragment dropped, "/" if empty) into *target.
 * 0, -1 when the URL is not a valid http:// URL. */
int wp_split_http_url(const char *url, char *host, size_t cap, char **target);
/* True when header name is hop-by-hop for this message: the RFC 9110 7.6.1
 * list or a name listed in the message's Connection header (connection may
 * be NULL). */
int wp_hop_by_hop(const char *name, const char *connection);
/* Forwards the current request (absolute-form http://) with the payment
 * loop and answers the browser. 0: the connection may carry on; -1: close. */
int wp_forward(wp_conn *c);
/* Frees c's upstream handle. */
void wp_forward_cleanup(wp_conn *c);

/* ---- wp_tunnel.c ---- */

/* Serves CONNECT c->url (host:port): refuses ports not in connect_ports
 * (403), connects, answers 200 and relays bytes both ways until either side
 * closes or stays idle for upstream_timeout. Returns 0 when the browser
 * connection may carry on (a refusal page), -1 when it must be closed. */
int wp_tunnel(wp_conn *c);

#endif
