/*
 * wp_page.c - the wallet's own answers (wp_page in wp.h): filling and
 * freeing them, shared by the proxy core, the payment engine and the UI.
 */
#include <stdlib.h>
#include <string.h>
#include "wp.h"

void wp_page_clear(wp_page *p)
{
    if (p == NULL)
        return;
    free(p->content_type);
    free(p->location);
    free(p->extra_headers);
    free(p->body);
    memset(p, 0, sizeof(*p));
}

int wp_page_set(wp_page *p, int status, const char *ctype, const char *body, size_t len)
{
    char *ct = strdup(ctype != NULL ? ctype : "text/plain; charset=utf-8");
    char *b = malloc(len + 1);
    int rv = -1;

    if (ct == NULL || b == NULL)
        goto out;
    if (len > 0)
        memcpy(b, body, len);
    b[len] = '\0';
    wp_page_clear(p);
    p->status = status;
    p->content_type = ct;
    p->body = b;
    p->body_len = len;
    ct = NULL;
    b = NULL;
    rv = 0;
out:
    free(ct);
    free(b);
    return rv;
}
