/*
 * libFuzzer target for the configuration parser (wallet-proxy/
 * wp_config.c through wp_config_parse_buffer, the code wp_config_load
 * runs on a file's lines).
 *
 * Properties checked beyond "no crash, no leak, no out-of-bounds access":
 *  - accepted: every field is within what wp_config_set documents (list
 *    counts, ranges, ports, prefixes, NUL-terminated strings, amounts that
 *    parse);
 *  - refused: a NUL-terminated message starting with "NAME:".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "mp_amount.h"
#include "wp_config.h"

#define TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

static void check_amount(const char *s, size_t cap)
{
    mp_amount a;

    if (memchr(s, '\0', cap) == NULL || s[0] == '\0' || mp_amount_parse(s, strlen(s), &a) != MP_OK)
        abort();
}

static void check_config(const wp_config *c)
{
    size_t i;

    if (c->nallow > WP_MAX_ALLOW || c->nconnect_ports > WP_MAX_CONNECT_PORTS
        || c->nresolve > WP_MAX_RESOLVE)
        abort();
    for (i = 0; i < c->nallow; i++)
        if (!((c->allow[i].family == AF_INET && c->allow[i].prefix <= 32)
              || (c->allow[i].family == AF_INET6 && c->allow[i].prefix <= 128)))
            abort();
    for (i = 0; i < c->nconnect_ports; i++)
        if (c->connect_ports[i] < 1 || c->connect_ports[i] > 65535)
            abort();
    for (i = 0; i < c->nresolve; i++)
        if (!TERMINATED(c->resolve[i]) || c->resolve[i][0] == '\0')
            abort();
    if (c->listen_port > 65535 || c->max_clients < 1 || c->max_clients > 4096
        || c->max_header_bytes < 1024 || c->max_header_bytes > 1024 * 1024
        || c->max_request_body > 1024UL * 1024 * 1024 || c->upstream_timeout < 1
        || c->upstream_timeout > 3600 || c->store_size < 1024 * 1024
        || c->log_level < 0 || c->log_level > 3)
        abort();
    if (!TERMINATED(c->listen_addr) || !TERMINATED(c->port_file) || !TERMINATED(c->pid_file)
        || !TERMINATED(c->state_dir) || !TERMINATED(c->broker_url)
        || !TERMINATED(c->broker_ca_file) || !TERMINATED(c->account)
        || !TERMINATED(c->account_key_file) || !TERMINATED(c->log_file))
        abort();
    check_amount(c->threshold, sizeof c->threshold);
    check_amount(c->site_budget, sizeof c->site_budget);
    check_amount(c->daily_budget, sizeof c->daily_budget);
    check_amount(c->topup, sizeof c->topup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wp_config c;
    char err[1024];

    wp_config_defaults(&c);
    memset(err, 0x5a, sizeof err);
    if (wp_config_parse_buffer(&c, "fuzz.conf", (const char *)data, size, err, sizeof err) == 0)
        check_config(&c);
    else if (!TERMINATED(err) || strncmp(err, "fuzz.conf:", 10) != 0)
        abort();
    return 0;
}
