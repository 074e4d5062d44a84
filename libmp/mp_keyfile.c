/*
 * mp_keyfile.c - the vendor secrets file (see mp_keyfile.h).
 *
 * Secrets pass through local copies only, which are wiped on every path:
 * a parse that fails half-way must not leave key bytes on the stack or in
 * the caller's output.
 */
#include <string.h>
#include "mp_keyfile.h"
#include "mp_crypto.h"

#define KF_SECRET_MIN  16
#define KF_SECRET_MAX  64
#define KF_MAX_FIELDS  5
/* Room for the longest line,
 * "scrip 65535 <128 hex> retire=<20 digits> delegated\n" (179). */
#define KF_LINE_MAX    224

static const char kf_header[] = "# mod_micropay vendor secrets (0600, readable by root only)\n";

static const char *kind_name(uint8_t kind)
{
    switch (kind) {
    case MP_KEY_SCRIP:    return "scrip";
    case MP_KEY_CUSTOMER: return "customer";
    case MP_KEY_RECEIPT:  return "receipt";
    case MP_KEY_ACCOUNT:  return "account";
    default:              return NULL;
    }
}

/* ---- validity of a whole key set, shared by parse, format and apply ----------- */

static int entry_valid(const mp_keyfile_entry *e)
{
    return kind_name(e->kind) != NULL && e->len >= KF_SECRET_MIN && e->len <= KF_SECRET_MAX
        && (e->kind == MP_KEY_SCRIP || !e->delegated)
        && (e->kind == MP_KEY_SCRIP || e->kind == MP_KEY_RECEIPT || e->retire_at == 0)
        && e->delegated <= 1;
}

/* Whether entry e (of the first n of kf) may join them: its (kind, series) is
 * new and its kind still has room. */
static int entry_fits(const mp_keyfile *kf, size_t n, const mp_keyfile_entry *e)
{
    size_t j, same_kind = 0;

    for (j = 0; j < n; j++) {
        if (kf->e[j].kind != e->kind)
            continue;
        if (kf->e[j].series == e->series)
            return 0;
        same_kind++;
    }
    return same_kind < MP_MAX_SERIES;
}

/* Without a scrip and a customer secret a vendor can neither stamp change
 * nor check a request signature: such a file is a mistake, not a choice. */
static int kinds_complete(const mp_keyfile *kf)
{
    int scrip = 0, customer = 0;
    size_t j;

    for (j = 0; j < kf->n; j++) {
        scrip |= kf->e[j].kind == MP_KEY_SCRIP;
        customer |= kf->e[j].kind == MP_KEY_CUSTOMER;
    }
    return scrip && customer;
}

static int keyfile_valid(const mp_keyfile *kf)
{
    size_t j;

    if (kf->n > sizeof kf->e / sizeof kf->e[0])
        return 0;
    for (j = 0; j < kf->n; j++)
        if (!entry_valid(&kf->e[j]) || !entry_fits(kf, j, &kf->e[j]))
            return 0;
    return kinds_complete(kf);
}

/* ---- parse -------------------------------------------------------------------- */

typedef struct {
    const char *p;
    size_t      len;
} kf_field;

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int field_is(const kf_field *f, const char *word)
{
    size_t n = strlen(word);
    return f->len == n && memcmp(f->p, word, n) == 0;
}

/* Plain decimal digits only: a sign or anything else is refused. max bounds
 * the value, and the digit count bounds the loop before it can wrap. */
static int parse_decimal(const char *p, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t j;

    if (len == 0 || len > 20)
        return 0;
    for (j = 0; j < len; j++) {
        if (p[j] < '0' || p[j] > '9')
            return 0;
        if (v > (max - (uint64_t)(p[j] - '0')) / 10)
            return 0;
        v = v * 10 + (uint64_t)(p[j] - '0');
    }
    *out = v;
    return 1;
}

static int parse_hex(const kf_field *f, uint8_t *out, uint8_t *out_len)
{
    size_t j;
    int hi, lo;

    if (f->len % 2 != 0 || f->len < 2 * KF_SECRET_MIN || f->len > 2 * KF_SECRET_MAX)
        return 0;
    for (j = 0; j < f->len / 2; j++) {
        hi = hexval(f->p[2 * j]);
        lo = hexval(f->p[2 * j + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[j] = (uint8_t)(hi << 4 | lo);
    }
    *out_len = (uint8_t)(f->len / 2);
    return 1;
}

/* Parses one line (without its end of line) into e. *skip = 1 for blank and
 * comment lines. MP_ERR_CHARSET or MP_ERR_MALFORMED. */
static mp_status parse_line(const char *s, size_t len, mp_keyfile_entry *e, int *skip)
{
    kf_field f[KF_MAX_FIELDS];
    size_t nf = 0, pos = 0, start, j;
    uint64_t v;
    mp_status st = MP_ERR_CHARSET;

    /* Only printable ASCII and tabs: a control byte or UTF-8 in a key file
     * is corruption or an editor accident, never intended. */
    for (pos = 0; pos < len; pos++)
        if (s[pos] != '\t' && ((unsigned char)s[pos] < 0x20 || (unsigned char)s[pos] > 0x7e))
            goto out;
    st = MP_ERR_MALFORMED;
    *skip = 0;
    for (pos = 0; pos < len && is_blank(s[pos]); pos++)
        ;
    if (pos == len || s[pos] == '#') {
        *skip = 1;
        st = MP_OK;
        goto out;
    }
    while (pos < len) {
        start = pos;
        while (pos < len && !is_blank(s[pos]))
            pos++;
        if (nf == KF_MAX_FIELDS)
            goto out;
        f[nf].p = s + start;
        f[nf].len = pos - start;
        nf++;
        while (pos < len && is_blank(s[pos]))
            pos++;
    }
    if (nf < 3)
        goto out;

    memset(e, 0, sizeof *e);
    if (field_is(&f[0], "scrip"))
        e->kind = MP_KEY_SCRIP;
    else if (field_is(&f[0], "customer"))
        e->kind = MP_KEY_CUSTOMER;
    else if (field_is(&f[0], "receipt"))
        e->kind = MP_KEY_RECEIPT;
    else if (field_is(&f[0], "account"))
        e->kind = MP_KEY_ACCOUNT;
    else
        goto out;
    if (!parse_decimal(f[1].p, f[1].len, 0xffff, &v))
        goto out;
    e->series = (uint16_t)v;
    if (!parse_hex(&f[2], e->secret, &e->len))
        goto out;
    for (j = 3; j < nf; j++) {
        /* Delegation is a property of scrip only, retirement of scrip and
         * receipt secrets (a rotated receipt secret is accepted until it
         * retires): other secrets are dropped by removing their line. 0
         * would read as "never"; each attribute may appear once. */
        if (e->kind != MP_KEY_SCRIP && e->kind != MP_KEY_RECEIPT)
            goto out;
        if (field_is(&f[j], "delegated") && e->kind == MP_KEY_SCRIP) {
            if (e->delegated)
                goto out;
            e->delegated = 1;
        } else if (f[j].len >= 8 && memcmp(f[j].p, "retire=", 7) == 0 && e->retire_at == 0) {
            if (!parse_decimal(f[j].p + 7, f[j].len - 7, UINT64_MAX, &e->retire_at)
                || e->retire_at == 0)
                goto out;
        } else {
            goto out;
        }
    }
    st = MP_OK;
out:
    return st;
}

mp_status mp_keyfile_parse(const char *text, size_t len, mp_keyfile *out, size_t *line)
{
    mp_keyfile kf;
    mp_keyfile_entry e;
    size_t pos = 0, end, n, lineno = 0;
    int skip = 0;
    mp_status st = MP_ERR_ARG;

    memset(&kf, 0, sizeof kf);
    memset(&e, 0, sizeof e);
    if ((text == NULL && len > 0) || out == NULL)
        goto out;
    if (len > MP_KEYFILE_MAX) {
        st = MP_ERR_TOO_LARGE;
        goto out;
    }
    while (pos < len) {
        lineno++;
        end = pos;
        while (end < len && text[end] != '\n')
            end++;
        n = end - pos;
        /* CRLF files come from Windows editors; a lone CR stays a bad byte. */
        if (end < len && n > 0 && text[end - 1] == '\r')
            n--;
        if ((st = parse_line(text + pos, n, &e, &skip)) != MP_OK)
            goto out;
        pos = end < len ? end + 1 : end;
        if (skip)
            continue;
        st = MP_ERR_MALFORMED;
        if (!entry_fits(&kf, kf.n, &e))
            goto out;
        kf.e[kf.n++] = e;
        mp_wipe(&e, sizeof e);
    }
    lineno = 0;
    st = MP_ERR_MALFORMED;
    if (!kinds_complete(&kf))
        goto out;
    memcpy(out, &kf, sizeof kf);
    st = MP_OK;
out:
    if (line != NULL)
        *line = st == MP_OK ? 0 : lineno;
    mp_wipe(&e, sizeof e);
    mp_wipe(&kf, sizeof kf);
    return st;
}

/* ---- format ------------------------------------------------------------------- */

/* Writes v in decimal at p; returns the digit count. */
static size_t put_decimal(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0, j;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (j = 0; j < n; j++)
        p[j] = tmp[n - 1 - j];
    return n;
}

/* One line of the file for e, into buf of KF_LINE_MAX; returns its length. */
static size_t format_line(const mp_keyfile_entry *e, char buf[KF_LINE_MAX])
{
    static const char hex[] = "0123456789abcdef";
    const char *kw = kind_name(e->kind);
    size_t n = strlen(kw), j;

    memcpy(buf, kw, n);
    buf[n++] = ' ';
    n += put_decimal(buf + n, e->series);
    buf[n++] = ' ';
    for (j = 0; j < e->len; j++) {
        buf[n++] = hex[e->secret[j] >> 4];
        buf[n++] = hex[e->secret[j] & 15];
    }
    if (e->retire_at != 0) {
        memcpy(buf + n, " retire=", 8);
        n += 8;
        n += put_decimal(buf + n, e->retire_at);
    }
    if (e->delegated) {
        memcpy(buf + n, " delegated", 10);
        n += 10;
    }
    buf[n++] = '\n';
    return n;
}

mp_status mp_keyfile_format(const mp_keyfile *kf, char *buf, size_t cap, size_t *len)
{
    char tmp[KF_LINE_MAX];
    size_t total, n, j;
    mp_status st = MP_ERR_ARG;

    /* Never write a file the parser would refuse. */
    if (kf == NULL || buf == NULL || len == NULL || !keyfile_valid(kf))
        goto out;
    /* Measured first so that a short buffer receives no secret at all. */
    total = sizeof kf_header - 1;
    for (j = 0; j < kf->n; j++)
        total += format_line(&kf->e[j], tmp);
    st = MP_ERR_BUFFER;
    if (total + 1 > cap)
        goto out;
    memcpy(buf, kf_header, sizeof kf_header - 1);
    total = sizeof kf_header - 1;
    for (j = 0; j < kf->n; j++) {
        n = format_line(&kf->e[j], tmp);
        memcpy(buf + total, tmp, n);
        total += n;
    }
    buf[total] = '\0';
    *len = total;
    st = MP_OK;
out:
    mp_wipe(tmp, sizeof tmp);
    return st;
}

/* ---- apply ---------------------------------------------------------------------- */

static mp_status add_all(const mp_keyfile *kf, mp_mc_issuer *iss)
{
    const mp_keyfile_entry *e;
    mp_status st = MP_OK;
    size_t j;

    for (j = 0; j < kf->n && st == MP_OK; j++) {
        e = &kf->e[j];
        if (e->kind == MP_KEY_SCRIP)
            st = mp_mc_issuer_add_scrip_secret(iss, e->series, e->secret, e->len, e->retire_at);
        else if (e->kind == MP_KEY_CUSTOMER)
            st = mp_mc_issuer_add_customer_secret(iss, e->series, e->secret, e->len);
    }
    return st;
}

mp_status mp_keyfile_apply(const mp_keyfile *kf, mp_mc_issuer *iss, mp_mac **receipt_key)
{
    const mp_keyfile_entry *newest = NULL;
    mp_mc_issuer *trial = NULL;
    mp_mac *m = NULL;
    size_t j;
    mp_status st = MP_ERR_ARG;

    if (kf == NULL || iss == NULL || receipt_key == NULL || !keyfile_valid(kf))
        goto out;
    for (j = 0; j < kf->n; j++)
        if (kf->e[j].kind == MP_KEY_RECEIPT && (newest == NULL || kf->e[j].series > newest->series))
            newest = &kf->e[j];
    if (newest != NULL && (st = mp_mac_new(newest->secret, newest->len, &m)) != MP_OK)
        goto out;
    /* The issuer has no way to drop a customer series again, so the set is
     * tried on a copy first: a clash with a series iss already holds, or too
     * many series, leaves iss as it was. Only running out of memory in the
     * second pass can leave it partly loaded. */
    if ((st = mp_mc_issuer_dup(iss, &trial)) != MP_OK || (st = add_all(kf, trial)) != MP_OK)
        goto out;
    if ((st = add_all(kf, iss)) != MP_OK)
        goto out;
    *receipt_key = m;
    m = NULL;
out:
    mp_mc_issuer_free(trial);
    mp_mac_free(m);
    return st;
}

mp_status mp_keyfile_receipt_prev(const mp_keyfile *kf, mp_mac **prev, uint64_t *retire_at)
{
    const mp_keyfile_entry *newest = NULL, *before = NULL;
    mp_mac *m = NULL;
    size_t j;
    mp_status st = MP_ERR_ARG;

    if (kf == NULL || prev == NULL || retire_at == NULL || !keyfile_valid(kf))
        goto out;
    for (j = 0; j < kf->n; j++) {
        if (kf->e[j].kind != MP_KEY_RECEIPT)
            continue;
        if (newest == NULL || kf->e[j].series > newest->series) {
            before = newest;
            newest = &kf->e[j];
        } else if (before == NULL || kf->e[j].series > before->series) {
            before = &kf->e[j];
        }
    }
    if (before != NULL && (st = mp_mac_new(before->secret, before->len, &m)) != MP_OK)
        goto out;
    *prev = m;
    *retire_at = before != NULL ? before->retire_at : 0;
    st = MP_OK;
out:
    return st;
}

void mp_keyfile_wipe(mp_keyfile *kf)
{
    if (kf != NULL)
        mp_wipe(kf, sizeof *kf);
}
