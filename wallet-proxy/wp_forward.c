/*
 * wp_forward.c - forwarding one absolute-form http:// request upstream with
 * libcurl (one easy handle per connection thread, so upstream connections
 * are kept alive across the browser's requests) and the payment loop of
 * wp_pay.h around it: the engine sees every final response head and says
 * deliver, retry with a credential, or answer with its own page.
 *
 * The request body was buffered by wp_conn.c, so it can be sent again on a
 * payment retry. The response body is never buffered: it is written to the
 * browser from curl's write callback, and a blocking send is the
 * back-pressure, so memory does not grow with the body.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "wp_conn.h"

#define WP_RESP_HEAD_MAX   (64 * 1024)   /* upstream header section we accept */
#define WP_RESP_MAX_HDRS   256
#define WP_DRAIN_MAX       (256 * 1024)  /* body of a 402 we read before dropping the connection */

enum { BODY_NONE = 0, BODY_LENGTH, BODY_CHUNKED, BODY_CLOSE };

/* One forwarded request: the current upstream response and what was decided. */
typedef struct {
    wp_conn *c;
    wp_pay *p;
    const char *host;
    int head_request;
    /* the current response head (reset at every status line) */
    int status;
    char reason[128];
    size_t hlen;
    size_t nhdrs;
    int too_big;
    int final_head;          /* the final (non-1xx) head is complete */
    /* the engine's decision */
    int decided;
    wp_pay_action action;
    wp_cred cred;            /* credential for the next round */
    wp_page page;
    /* delivering */
    int head_sent;
    int body_mode;
    int browser_gone;
    size_t drained;
    /* A head with a body to follow waits here to leave in one sendmsg with
     * the body's first bytes: one syscall and one segment fewer a response. */
    char *pend;
    size_t pendlen;
    /* big buffers last: only the members above are zeroed per request */
    wp_hdr hdrs[WP_RESP_MAX_HDRS];
    char hbuf[WP_RESP_HEAD_MAX];
} fwd;

static const char *const hop_by_hop[] = {
    "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", NULL
};

int wp_hop_by_hop(const char *name, const char *connection)
{
    size_t i, nlen = strlen(name);
    const char *p = connection;

    for (i = 0; hop_by_hop[i] != NULL; i++)
        if (strcasecmp(name, hop_by_hop[i]) == 0)
            return 1;
    while (p != NULL && *p != '\0') {
        size_t len;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        len = strcspn(p, " \t,");
        if (len == nlen && len > 0 && strncasecmp(p, name, len) == 0)
            return 1;
        p += len;
    }
    return 0;
}

static int reg_name_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           strchr("-._~%!$&'()*+,;=", ch) != NULL;
}

int wp_split_http_url(const char *url, char *host, size_t cap, char **target)
{
    const char *a, *end, *hend, *portp = NULL, *t, *frag;
    char out[300];
    unsigned long port = 80;
    size_t hlen, i, tlen;
    char *tg;

    if (strncasecmp(url, "http://", 7) != 0)
        return -1;
    a = url + 7;
    end = a + strcspn(a, "/?#");
    if (end == a || memchr(a, '@', (size_t)(end - a)) != NULL)
        return -1;
    if (*a == '[') {
        hend = memchr(a, ']', (size_t)(end - a));
        if (hend == NULL || hend == a + 1)
            return -1;
        for (i = 1; a + i < hend; i++)
            if (strchr("0123456789abcdefABCDEF:.", a[i]) == NULL)
                return -1;
        hend++;
        if (hend < end && *hend != ':')
            return -1;
    } else {
        hend = memchr(a, ':', (size_t)(end - a));
        if (hend == NULL)
            hend = end;
        for (i = 0; a + i < hend; i++)
            if (!reg_name_char((unsigned char)a[i]))
                return -1;
    }
    hlen = (size_t)(hend - a);
    if (hlen == 0 || hlen + 7 > sizeof(out))
        return -1;
    if (hend < end) {                   /* ":port" */
        portp = hend + 1;
        if (portp < end) {
            port = 0;
            for (i = 0; portp + i < end; i++) {
                if (portp[i] < '0' || portp[i] > '9' || i >= 5)
                    return -1;
                port = port * 10 + (unsigned long)(portp[i] - '0');
            }
            if (port == 0 || port > 65535)
                return -1;
        }
    }
    for (i = 0; i < hlen; i++)
        out[i] = (a[i] >= 'A' && a[i] <= 'Z') ? (char)(a[i] - 'A' + 'a') : a[i];
    out[hlen] = '\0';
    if (port != 80)
        snprintf(out + hlen, sizeof(out) - hlen, ":%lu", port);
    if (strlen(out) >= cap)
        return -1;
    t = end;
    frag = strchr(t, '#');
    tlen = frag != NULL ? (size_t)(frag - t) : strlen(t);
    tg = malloc(tlen + 2);
    if (tg == NULL)
        return -1;
    if (tlen == 0 || *t == '?') {
        tg[0] = '/';
        memcpy(tg + 1, t, tlen);
        tg[tlen + 1] = '\0';
    } else {
        memcpy(tg, t, tlen);
        tg[tlen] = '\0';
    }
    memcpy(host, out, strlen(out) + 1);
    *target = tg;
    return 0;
}

/* All values of the header name joined with ", " (malloc'ed), NULL if none. */
static char *joined(const wp_hdr *hdrs, size_t n, const char *name)
{
    size_t i, len = 0;
    char *s = NULL;

    for (i = 0; i < n; i++)
        if (strcasecmp(hdrs[i].name, name) == 0)
            len += strlen(hdrs[i].value) + 2;
    if (len == 0)
        return NULL;
    s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    s[0] = '\0';
    for (i = 0; i < n; i++)
        if (strcasecmp(hdrs[i].name, name) == 0) {
            if (s[0] != '\0')
                strcat(s, ", ");
            strcat(s, hdrs[i].value);
        }
    return s;
}

static int has_hdr(const wp_hdr *hdrs, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcasecmp(hdrs[i].name, name) == 0)
            return 1;
    return 0;
}

static int add_line(struct curl_slist **list, const char *name, const char *sep, const char *value)
{
    size_t len = strlen(name) + strlen(sep) + strlen(value) + 1;
    char *line = malloc(len);
    struct curl_slist *n;

    if (line == NULL)
        return -1;
    snprintf(line, len, "%s%s%s", name, sep, value);
    n = curl_slist_append(*list, line);
    free(line);
    if (n == NULL)
        return -1;
    *list = n;
    return 0;
}

/* The request headers sent upstream: the browser's end-to-end ones, our Via,
 * the credential; overrides for curl's defaults the browser did not send.
 * NULL on ENOMEM. */
static struct curl_slist *request_headers(const wp_conn *c, const wp_cred *cred)
{
    struct curl_slist *list = NULL;
    char *conn = joined(c->hdrs, c->nhdrs, "Connection");
    size_t i;
    int ok = 1;

    for (i = 0; i < c->nhdrs && ok; i++) {
        const char *name = c->hdrs[i].name;

        if (wp_hop_by_hop(name, conn) || strcasecmp(name, "Host") == 0 ||
            strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Expect") == 0 ||
            (cred->name != NULL && strcasecmp(name, cred->name) == 0))
            continue;
        /* curl drops "Name:" lines; "Name;" sends an empty value */
        if (c->hdrs[i].value[0] == '\0')
            ok = add_line(&list, name, ";", "") == 0;
        else
            ok = add_line(&list, name, ": ", c->hdrs[i].value) == 0;
    }
    if (ok && !has_hdr(c->hdrs, c->nhdrs, "Accept"))
        ok = add_line(&list, "Accept", ":", "") == 0;
    if (ok)
        ok = add_line(&list, "Expect", ":", "") == 0;
    if (ok && c->has_body && !has_hdr(c->hdrs, c->nhdrs, "Content-Type"))
        ok = add_line(&list, "Content-Type", ":", "") == 0;
    if (ok)
        ok = add_line(&list, "Via", ": ", WP_VIA) == 0;
    if (ok && cred->name != NULL && cred->value != NULL)
        ok = add_line(&list, cred->name, ": ", cred->value) == 0;
    free(conn);
    if (!ok) {
        curl_slist_free_all(list);
        list = NULL;
    }
    return list;
}

static int send_iov(wp_conn *c, struct iovec *iov, int n)
{
    while (n > 0) {
        struct msghdr mh;
        ssize_t w;

        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)n;
        w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            c->keep_alive = 0;
            return -1;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static const char *resp_header(const fwd *f, const char *name)
{
    size_t i;

    for (i = 0; i < f->nhdrs; i++)
        if (strcasecmp(f->hdrs[i].name, name) == 0)
            return f->hdrs[i].value;
    return NULL;
}

/* Sends the final response head to the browser and picks the body framing. */
static int send_head(fwd *f)
{
    wp_conn *c = f->c;
    char *conn = joined(f->hdrs, f->nhdrs, "Connection");
    int te = resp_header(f, "Transfer-Encoding") != NULL;
    /* A Content-Length the upstream Connection header names is stripped
     * below as hop-by-hop, so it cannot frame what the browser reads. */
    int cl = resp_header(f, "Content-Length") != NULL && !wp_hop_by_hop("Content-Length", conn);
    const char *cl0 = resp_header(f, "Content-Length");
    size_t cap = f->hlen + 4 * f->nhdrs + 512, n, i;
    char *head = malloc(cap);
    int rv = -1;

    if (head == NULL)
        goto out;
    /* Security: several Content-Length fields that differ (or one that is not
     * all digits) would be passed on as they are: curl framed the body by
     * one, a browser may frame it by another and take the rest of the body
     * for the next response on this keep-alive connection, which may be for
     * another site (response splitting across origins). RFC 9112 6.3: such
     * a response is invalid; the browser gets a 502 and the connection ends. */
    for (i = 0; cl0 != NULL && i < f->nhdrs; i++) {
        const char *v = f->hdrs[i].value;

        if (strcasecmp(f->hdrs[i].name, "Content-Length") != 0)
            continue;
        if (strcmp(v, cl0) != 0 || v[0] == '\0' || strspn(v, "0123456789") != strlen(v)) {
            wp_log(WP_LOG_WARN, "WP00025 %s: upstream %s sent conflicting or invalid "
                   "Content-Length fields; answered 502", c->peer, f->host);
            c->keep_alive = 0;
            wp_conn_send_error(c, 502, "The site's answer had conflicting Content-Length "
                               "fields; the wallet does not pass such answers on.");
            f->browser_gone = 1;
            goto out;
        }
    }
    if (f->head_request || f->status == 204 || f->status == 304)
        f->body_mode = BODY_NONE;
    else if (cl && !te)
        f->body_mode = BODY_LENGTH;
    else if (c->http_major == 1 && c->http_minor >= 1)
        f->body_mode = BODY_CHUNKED;
    else {
        f->body_mode = BODY_CLOSE;
        c->keep_alive = 0;
    }
    n = (size_t)snprintf(head, cap, "HTTP/1.1 %d %s\r\n", f->status,
                         f->reason[0] != '\0' ? f->reason : wp_status_reason(f->status));
    for (i = 0; i < f->nhdrs; i++) {
        const wp_hdr *h = &f->hdrs[i];

        if (wp_hop_by_hop(h->name, conn) || (te && strcasecmp(h->name, "Content-Length") == 0))
            continue;
        if (strcasecmp(h->name, "Content-Length") == 0 && h->value != cl0)
            continue;                       /* duplicates (all equal, checked above): one */
        n += (size_t)snprintf(head + n, cap - n, "%s: %s\r\n", h->name, h->value);
    }
    n += (size_t)snprintf(head + n, cap - n, "Via: %s\r\n%s%s\r\n", WP_VIA,
                          f->body_mode == BODY_CHUNKED ? "Transfer-Encoding: chunked\r\n" : "",
                          wp_conn_connection_line(c));
    if (n >= cap) {
        f->browser_gone = 1;
        goto out;
    }
    if (f->body_mode != BODY_NONE) {
        f->pend = head;
        f->pendlen = n;
        head = NULL;
    } else if (wp_conn_send(c, head, n) != 0) {
        f->browser_gone = 1;
        goto out;
    }
    f->head_sent = 1;
    rv = 0;
out:
    free(conn);
    free(head);
    return rv;
}

/* Asks the engine about the final head; on DELIVER sends it on. 0 or -1 (abort). */
static int decide(fwd *f)
{
    f->decided = 1;
    f->action = wp_pay_response(f->p, f->status, f->hdrs, f->nhdrs, &f->cred, &f->page);
    wp_log(WP_LOG_DEBUG, "WP00021 %s: upstream %s answered %d; engine: %s", f->c->peer, f->host,
           f->status, f->action == WP_PAY_DELIVER ? "deliver" :
           f->action == WP_PAY_RETRY ? "retry" : "page");
    if (f->action == WP_PAY_DELIVER)
        return send_head(f);
    return 0;
}

static void reset_response(fwd *f)
{
    f->status = 0;
    f->reason[0] = '\0';
    f->hlen = 0;
    f->nhdrs = 0;
    f->final_head = 0;
}

/* RFC 9110 tchar, without the locale. */
static int resp_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Security: libcurl splits header lines at LF only, so a bare CR (or another
 * control character) inside an upstream value or reason phrase would reach
 * the browser inside the head the wallet writes, where a lenient parser
 * takes it for a line break (header injection / response splitting). RFC
 * 9110 5.5 lets a recipient replace CR, LF and NUL by SP: every CTL but HTAB
 * becomes SP here, in place. */
static void ctl_to_sp(char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || (unsigned char)s[i] == 0x7f)
            s[i] = ' ';
}

/* Stores one "Name: value" header (or a folded continuation) in f. A field
 * whose name is not a token ("Content-Length : 5", a CTL) is dropped: curl
 * did not frame the body by it (RFC 9112 5.1), so passing it on would let
 * the browser frame the body differently from the wallet (CL + chunked). */
static int store_header(fwd *f, const char *line, size_t len)
{
    const char *colon, *v;
    size_t nlen, vlen, i;

    if (line[0] == ' ' || line[0] == '\t') {       /* obs-fold: continue the last value */
        while (len > 0 && (*line == ' ' || *line == '\t')) {
            line++;
            len--;
        }
        if (f->nhdrs == 0 || f->hlen + len + 2 > sizeof(f->hbuf))
            return -1;
        f->hbuf[f->hlen - 1] = ' ';                 /* the value's NUL, last in hbuf */
        memcpy(f->hbuf + f->hlen, line, len);
        ctl_to_sp(f->hbuf + f->hlen, len);
        f->hlen += len;
        f->hbuf[f->hlen++] = '\0';
        return 0;
    }
    colon = memchr(line, ':', len);
    if (colon == NULL || colon == line)
        return 0;                                   /* not a header: ignored */
    nlen = (size_t)(colon - line);
    for (i = 0; i < nlen; i++)
        if (!resp_tchar((unsigned char)line[i])) {
            wp_log(WP_LOG_DEBUG, "WP00024 %s: upstream %s sent a header field whose name is "
                   "not a token; dropped", f->c->peer, f->host);
            return 0;
        }
    v = colon + 1;
    vlen = len - nlen - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (f->nhdrs >= WP_RESP_MAX_HDRS || f->hlen + nlen + vlen + 2 > sizeof(f->hbuf))
        return -1;
    f->hdrs[f->nhdrs].name = f->hbuf + f->hlen;
    memcpy(f->hbuf + f->hlen, line, nlen);
    f->hlen += nlen;
    f->hbuf[f->hlen++] = '\0';
    f->hdrs[f->nhdrs].value = f->hbuf + f->hlen;
    memcpy(f->hbuf + f->hlen, v, vlen);
    ctl_to_sp(f->hbuf + f->hlen, vlen);
    f->hlen += vlen;
    f->hbuf[f->hlen++] = '\0';
    f->nhdrs++;
    return 0;
}

static size_t header_cb(char *data, size_t size, size_t nitems, void *arg)
{
    fwd *f = arg;
    size_t n = size * nitems, len = n;

    if (f->final_head)
        return n;                        /* trailers after a chunked body: dropped */
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        const char *sp = memchr(data, ' ', len);
        size_t rlen;

        reset_response(f);
        if (sp == NULL || len - (size_t)(sp - data) < 4)
            return 0;
        f->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
        if (f->status < 100 || f->status > 999)
            return 0;
        rlen = len - (size_t)(sp + 4 - data);
        if (rlen > 0 && sp[4] == ' ') {
            rlen--;
            if (rlen >= sizeof(f->reason))
                rlen = sizeof(f->reason) - 1;
            memcpy(f->reason, sp + 5, rlen);
            f->reason[rlen] = '\0';
            ctl_to_sp(f->reason, rlen);            /* no CR into our status line */
        }
        return n;
    }
    if (len == 0) {                      /* end of a head */
        if (f->status < 200)
            return n;                    /* 1xx interim: not forwarded */
        f->final_head = 1;
        return decide(f) == 0 ? n : 0;
    }
    if (store_header(f, data, len) != 0) {
        f->too_big = 1;
        return 0;
    }
    return n;
}

/* Sends body bytes (chunk-framed if so), after the pending head if any, and
 * with last the chunked terminator. 0 or -1 (browser gone). */
static int send_body(fwd *f, const char *data, size_t n, int last)
{
    char size_line[24];
    struct iovec iov[5];
    int k = 0, rv;

    if (f->pend != NULL) {
        iov[k].iov_base = f->pend;
        iov[k++].iov_len = f->pendlen;
    }
    if (n > 0 && f->body_mode == BODY_CHUNKED) {
        iov[k].iov_base = size_line;
        iov[k++].iov_len = (size_t)snprintf(size_line, sizeof(size_line), "%zx\r\n", n);
    }
    if (n > 0) {
        iov[k].iov_base = (void *)data;
        iov[k++].iov_len = n;
    }
    if (n > 0 && f->body_mode == BODY_CHUNKED) {
        iov[k].iov_base = (void *)"\r\n";
        iov[k++].iov_len = 2;
    }
    if (last && f->body_mode == BODY_CHUNKED) {
        iov[k].iov_base = (void *)"0\r\n\r\n";
        iov[k++].iov_len = 5;
    }
    rv = k > 0 ? send_iov(f->c, iov, k) : 0;
    free(f->pend);
    f->pend = NULL;
    return rv;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    fwd *f = arg;
    size_t n = size * nmemb;

    if (!f->decided && decide(f) != 0)
        return 0;
    if (f->action != WP_PAY_DELIVER) {
        f->drained += n;
        return f->drained > WP_DRAIN_MAX ? 0 : n;   /* dropped; too much: close instead */
    }
    if (!f->head_sent || f->browser_gone)
        return 0;
    if (f->body_mode == BODY_NONE || n == 0)
        return n;
    if (send_body(f, data, n, 0) != 0)
        f->browser_gone = 1;
    return f->browser_gone ? 0 : n;
}

static int setup_handle(wp_conn *c)
{
    size_t i;

    if (c->curl != NULL)
        return 0;
    for (i = 0; i < c->cfg->nresolve; i++) {
        struct curl_slist *n = curl_slist_append(c->resolve, c->cfg->resolve[i]);

        if (n == NULL)
            return -1;
        c->resolve = n;
    }
    c->curl = curl_easy_init();
    return c->curl != NULL ? 0 : -1;
}

void wp_forward_cleanup(wp_conn *c)
{
    if (c->curl != NULL)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
    curl_slist_free_all(c->resolve);
    c->resolve = NULL;
}

/* Sets every option for one round (the handle is reset, its connections kept). */
static int set_options(wp_conn *c, fwd *f, const char *url, struct curl_slist *hdrs, char *errbuf)
{
    CURL *h = c->curl;
    long t = (long)c->cfg->upstream_timeout;
    CURLcode e = CURLE_OK;

    curl_easy_reset(h);
#define SET(opt, val) do { if (e == CURLE_OK) e = curl_easy_setopt(h, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PATH_AS_IS, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http");
#else
    SET(CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTP);
#endif
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_NOSIGNAL, 1L);
    if (c->resolve != NULL)
        SET(CURLOPT_RESOLVE, c->resolve);
    SET(CURLOPT_CONNECTTIMEOUT, t);
    SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET(CURLOPT_LOW_SPEED_TIME, t);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_HTTP_CONTENT_DECODING, 0L);
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, f);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, f);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    if (f->head_request) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (c->has_body) {
        SET(CURLOPT_CUSTOMREQUEST, c->method);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
        SET(CURLOPT_POSTFIELDS, c->body != NULL ? c->body : "");
    } else if (strcmp(c->method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, c->method);
    }
#undef SET
    return e == CURLE_OK ? 0 : -1;
}

int wp_forward(wp_conn *c)
{
    char host[300];
    char errbuf[CURL_ERROR_SIZE];
    char *target = NULL, *url = NULL;
    fwd *f = NULL;
    wp_reqinfo ri;
    wp_pay *p = NULL;
    size_t ulen;
    int round, rv = -1;

    if (wp_split_http_url(c->url, host, sizeof(host), &target) != 0) {
        rv = wp_conn_send_error(c, 400, "The request target is not a valid http:// URL.");
        goto out;
    }
    ulen = strlen(host) + strlen(target) + 8;
    url = malloc(ulen);
    f = malloc(sizeof(*f));
    if (f != NULL)
        memset(f, 0, offsetof(fwd, hdrs));
    if (url == NULL || f == NULL || setup_handle(c) != 0) {
        c->keep_alive = 0;
        wp_conn_send_error(c, 500, "The wallet is out of memory.");
        goto out;
    }
    snprintf(url, ulen, "http://%s%s", host, target);
    f->c = c;
    f->host = host;
    f->head_request = strcmp(c->method, "HEAD") == 0;
    memset(&ri, 0, sizeof(ri));
    ri.method = c->method;
    ri.host = host;
    ri.target = target;
    ri.url = c->url;
    ri.has_authorization = wp_conn_header(c, "Authorization") != NULL;
    p = wp_pay_begin(c->w, &ri, &f->cred);
    f->p = p;
    for (round = 1;; round++) {
        struct curl_slist *hdrs = request_headers(c, &f->cred);
        CURLcode rc;
        const char *why;

        reset_response(f);
        f->decided = 0;
        f->drained = 0;
        f->too_big = 0;
        wp_page_clear(&f->page);
        errbuf[0] = '\0';
        if (hdrs == NULL || set_options(c, f, url, hdrs, errbuf) != 0) {
            curl_slist_free_all(hdrs);
            c->keep_alive = 0;
            wp_conn_send_error(c, 500, "The wallet could not prepare the upstream request.");
            goto out;
        }
        rc = curl_easy_perform(c->curl);
        curl_slist_free_all(hdrs);
        if (f->decided && f->action == WP_PAY_DELIVER) {
            if (!f->head_sent || f->browser_gone) {
                wp_log(WP_LOG_DEBUG, "WP00022 %s: browser went away during %s", c->peer, url);
                c->keep_alive = 0;
                goto out;
            }
            if (rc != CURLE_OK) {
                wp_log(WP_LOG_WARN, "WP00011 %s: upstream %s failed after the response head: %s",
                       c->peer, host, errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
                c->keep_alive = 0;
                goto out;
            }
            if (send_body(f, NULL, 0, 1) != 0)
                goto out;
            rv = c->keep_alive ? 0 : -1;
            goto out;
        }
        if (f->decided && f->action == WP_PAY_PAGE) {
            rv = wp_conn_send_page(c, &f->page);
            goto out;
        }
        if (f->decided && f->action == WP_PAY_RETRY) {
            if (round >= WP_PAY_MAX_ROUNDS) {
                wp_log(WP_LOG_WARN, "WP00013 %s: %s still unpaid after %d rounds", c->peer, url,
                       WP_PAY_MAX_ROUNDS);
                rv = wp_conn_send_error(c, 502, "The payment for this page did not succeed.");
                goto out;
            }
            continue;
        }
        /* no final response head: a transport failure */
        why = f->too_big ? "response header section too large" :
              errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
        if (rc == CURLE_URL_MALFORMAT) {
            wp_log(WP_LOG_INFO, "WP00009 %s: bad request target %.512s", c->peer, c->url);
            rv = wp_conn_send_error(c, 400, "The request target is not a valid http:// URL.");
            goto out;
        }
        wp_log(WP_LOG_WARN, "WP00011 %s: upstream %s: %s", c->peer, host, why);
        if (f->cred.name != NULL) {
            wp_page_clear(&f->page);
            wp_pay_transport_failed(p, why, &f->page);
            if (f->page.status != 0) {
                rv = wp_conn_send_page(c, &f->page);
                goto out;
            }
        }
        {
            char msg[CURL_ERROR_SIZE + 400];

            snprintf(msg, sizeof(msg), "The wallet could not get an answer from %s: %s", host, why);
            rv = wp_conn_send_error(c, rc == CURLE_OPERATION_TIMEDOUT ? 504 : 502, msg);
        }
        goto out;
    }
out:
    if (p != NULL)
        wp_pay_end(p);
    if (f != NULL) {
        wp_page_clear(&f->page);
        free(f->pend);
    }
    free(f);
    free(url);
    free(target);
    return rv;
}
