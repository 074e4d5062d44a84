/* The configuration (wp.h, wp_config.h): defaults, every key with a good
 * and a bad value, messages naming file and line, lists (the file's first
 * Allow/ConnectPort replaces the default, wp_config_set appends), the line
 * syntax and wp_config_load on real files. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>
#include "wp.h"
#include "wp_config.h"
#include "wp_tests.h"

static wp_config cfg;
static char err[1024];

static int set(const char *key, const char *value)
{
    err[0] = '\0';
    return wp_config_set(&cfg, key, value, err, sizeof err);
}

static int parse(const char *text)
{
    err[0] = '\0';
    return wp_config_parse_buffer(&cfg, "t.conf", text, strlen(text), err, sizeof err);
}

static void test_defaults(void)
{
    const char *home = getenv("HOME");

    wp_config_defaults(&cfg);
    CU_ASSERT_STRING_EQUAL(cfg.listen_addr, "127.0.0.1");
    CU_ASSERT_EQUAL(cfg.listen_port, 8402);
    CU_ASSERT_EQUAL(cfg.port_file[0], '\0');
    CU_ASSERT_EQUAL(cfg.pid_file[0], '\0');
    CU_ASSERT_EQUAL_FATAL(cfg.nallow, 2);
    CU_ASSERT_EQUAL(cfg.allow[0].family, AF_INET);
    CU_ASSERT_EQUAL(cfg.allow[0].prefix, 8);
    CU_ASSERT_EQUAL(cfg.allow[0].addr[0], 127);
    CU_ASSERT_EQUAL(cfg.allow[1].family, AF_INET6);
    CU_ASSERT_EQUAL(cfg.allow[1].prefix, 128);
    CU_ASSERT_EQUAL(cfg.allow[1].addr[15], 1);
    CU_ASSERT_EQUAL(cfg.nconnect_ports, 1);
    CU_ASSERT_EQUAL(cfg.connect_ports[0], 443);
    CU_ASSERT_EQUAL(cfg.nresolve, 0);
    CU_ASSERT_EQUAL(cfg.max_clients, 256);
    CU_ASSERT_EQUAL(cfg.max_header_bytes, 65536);
    CU_ASSERT_EQUAL(cfg.max_request_body, 8u * 1024 * 1024);
    CU_ASSERT_EQUAL(cfg.upstream_timeout, 60);
    CU_ASSERT_EQUAL(cfg.store_size, 64u * 1024 * 1024);
    CU_ASSERT_STRING_EQUAL(cfg.threshold, "0.01 USD");
    CU_ASSERT_STRING_EQUAL(cfg.site_budget, "0.50 USD");
    CU_ASSERT_STRING_EQUAL(cfg.daily_budget, "2.00 USD");
    CU_ASSERT_STRING_EQUAL(cfg.topup, "1.00 USD");
    CU_ASSERT_EQUAL(cfg.log_level, WP_LOG_INFO);
    CU_ASSERT_EQUAL(cfg.log_file[0], '\0');
    CU_ASSERT_EQUAL(cfg.broker_url[0], '\0');
    CU_ASSERT_EQUAL(cfg.account[0], '\0');
    if (home != NULL && home[0] == '/') {
        char want[600];

        snprintf(want, sizeof want, "%s/.mpwallet", home);
        CU_ASSERT_STRING_EQUAL(cfg.state_dir, want);
    }
    /* no file: the defaults stay */
    CU_ASSERT_EQUAL(wp_config_load(&cfg, NULL, err, sizeof err), 0);
    CU_ASSERT_EQUAL(cfg.listen_port, 8402);
}

static void test_good_values(void)
{
    wp_config_defaults(&cfg);
    CU_ASSERT_EQUAL(set("Listen", "8080"), 0);
    CU_ASSERT_EQUAL(cfg.listen_port, 8080);
    CU_ASSERT_STRING_EQUAL(cfg.listen_addr, "127.0.0.1");
    CU_ASSERT_EQUAL(set("Listen", "0.0.0.0:0"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.listen_addr, "0.0.0.0");
    CU_ASSERT_EQUAL(cfg.listen_port, 0);
    CU_ASSERT_EQUAL(set("listen", "[::1]:65535"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.listen_addr, "::1");
    CU_ASSERT_EQUAL(cfg.listen_port, 65535);
    CU_ASSERT_EQUAL(set("PortFile", "/tmp/p"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.port_file, "/tmp/p");
    CU_ASSERT_EQUAL(set("PidFile", "/run/wp.pid"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.pid_file, "/run/wp.pid");
    CU_ASSERT_EQUAL(set("Allow", "10.1.0.0/16"), 0);
    CU_ASSERT_EQUAL(cfg.nallow, 3);
    CU_ASSERT_EQUAL(cfg.allow[2].prefix, 16);
    CU_ASSERT_EQUAL(set("Allow", "fe80::/10"), 0);
    CU_ASSERT_EQUAL(cfg.allow[3].family, AF_INET6);
    CU_ASSERT_EQUAL(cfg.allow[3].prefix, 10);
    CU_ASSERT_EQUAL(set("Allow", "192.168.1.7"), 0);
    CU_ASSERT_EQUAL(cfg.allow[4].prefix, 32);
    CU_ASSERT_EQUAL(set("ConnectPort", "8443"), 0);
    CU_ASSERT_EQUAL(cfg.nconnect_ports, 2);
    CU_ASSERT_EQUAL(cfg.connect_ports[1], 8443);
    CU_ASSERT_EQUAL(set("Resolve", "news.example:8080:127.0.0.1"), 0);
    CU_ASSERT_EQUAL(set("Resolve", "a-b_c.example:443:[::1],10.0.0.1"), 0);
    CU_ASSERT_EQUAL(cfg.nresolve, 2);
    CU_ASSERT_STRING_EQUAL(cfg.resolve[1], "a-b_c.example:443:[::1],10.0.0.1");
    CU_ASSERT_EQUAL(set("MaxClients", "4096"), 0);
    CU_ASSERT_EQUAL(cfg.max_clients, 4096);
    CU_ASSERT_EQUAL(set("MaxHeaderSize", "1K"), 0);
    CU_ASSERT_EQUAL(cfg.max_header_bytes, 1024);
    CU_ASSERT_EQUAL(set("MaxHeaderSize", "1048576"), 0);
    CU_ASSERT_EQUAL(cfg.max_header_bytes, 1048576);
    CU_ASSERT_EQUAL(set("MaxRequestBody", "0"), 0);
    CU_ASSERT_EQUAL(cfg.max_request_body, 0);
    CU_ASSERT_EQUAL(set("MaxRequestBody", "1g"), 0);
    CU_ASSERT_EQUAL(cfg.max_request_body, 1024u * 1024 * 1024);
    CU_ASSERT_EQUAL(set("UpstreamTimeout", "3600"), 0);
    CU_ASSERT_EQUAL(cfg.upstream_timeout, 3600);
    CU_ASSERT_EQUAL(set("StateDir", "/var/lib/wp"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.state_dir, "/var/lib/wp");
    CU_ASSERT_EQUAL(set("BrokerURL", "https://broker.example/mp"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.broker_url, "https://broker.example/mp");
    CU_ASSERT_EQUAL(set("BrokerURL", "HTTP://127.0.0.1:8080"), 0);
    CU_ASSERT_EQUAL(set("BrokerCAFile", "/etc/ssl/ca.pem"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.broker_ca_file, "/etc/ssl/ca.pem");
    CU_ASSERT_EQUAL(set("Account", "alice-01!~"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.account, "alice-01!~");
    CU_ASSERT_EQUAL(set("AccountKeyFile", "account.key"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.account_key_file, "account.key");
    CU_ASSERT_EQUAL(set("StoreSize", "1M"), 0);
    CU_ASSERT_EQUAL(cfg.store_size, 1024u * 1024);
    CU_ASSERT_EQUAL(set("Threshold", "0.02 USD"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.threshold, "0.02 USD");
    CU_ASSERT_EQUAL(set("SiteBudget", "1 EUR"), 0);
    CU_ASSERT_EQUAL(set("DailyBudget", "3.5 USD"), 0);
    CU_ASSERT_EQUAL(set("Topup", "0.00001 USD"), 0);
    CU_ASSERT_EQUAL(cfg.payword_over_http, 0);
    CU_ASSERT_EQUAL(set("PayWordOverHTTP", "On"), 0);
    CU_ASSERT_EQUAL(cfg.payword_over_http, 1);
    CU_ASSERT_EQUAL(set("PayWordOverHTTP", "off"), 0);
    CU_ASSERT_EQUAL(cfg.payword_over_http, 0);
    CU_ASSERT_EQUAL(cfg.site_budget[0] != '\0' && cfg.daily_budget[0] != '\0', 1);
    CU_ASSERT_EQUAL(set("LogLevel", "DEBUG"), 0);
    CU_ASSERT_EQUAL(cfg.log_level, WP_LOG_DEBUG);
    CU_ASSERT_EQUAL(set("LogLevel", "error"), 0);
    CU_ASSERT_EQUAL(cfg.log_level, WP_LOG_ERROR);
    CU_ASSERT_EQUAL(set("LogFile", "/tmp/wp.log"), 0);
    CU_ASSERT_STRING_EQUAL(cfg.log_file, "/tmp/wp.log");
}

/* key, a value it refuses, a piece of the message */
static const struct { const char *key, *value, *msg; } bad[] = {
    { "Listen", "70000", "ADDR:PORT" },
    { "Listen", "::1:80", "ADDR:PORT" },
    { "Listen", "localhost:80", "ADDR:PORT" },
    { "Listen", "[::1]80", "ADDR:PORT" },
    { "Listen", "1.2.3.4:", "ADDR:PORT" },
    { "Allow", "10.0.0.0/33", "IPv4 or IPv6" },
    { "Allow", "::1/129", "IPv4 or IPv6" },
    { "Allow", "10.0.0.0/", "IPv4 or IPv6" },
    { "Allow", "example.com", "IPv4 or IPv6" },
    { "ConnectPort", "0", "1..65535" },
    { "ConnectPort", "65536", "1..65535" },
    { "ConnectPort", "-1", "1..65535" },
    { "Resolve", "news.example:8080:host", "HOST:PORT:ADDR" },
    { "Resolve", "news.example:0:127.0.0.1", "HOST:PORT:ADDR" },
    { "Resolve", ":80:127.0.0.1", "HOST:PORT:ADDR" },
    { "Resolve", "a/b:80:127.0.0.1", "HOST:PORT:ADDR" },
    { "Resolve", "a:80:127.0.0.1,", "HOST:PORT:ADDR" },
    { "MaxClients", "0", "1..4096" },
    { "MaxClients", "4097", "1..4096" },
    { "MaxClients", "12k", "1..4096" },
    { "MaxHeaderSize", "1023", "1024..1048576" },
    { "MaxHeaderSize", "1025K", "1024..1048576" },
    { "MaxHeaderSize", "2KB", "1024..1048576" },
    { "MaxRequestBody", "2G", "0..1073741824" },
    { "MaxRequestBody", "99999999999999999999", "0..1073741824" },
    { "MaxRequestBody", "18446744073709551615K", "0..1073741824" },
    { "UpstreamTimeout", "0", "1..3600" },
    { "UpstreamTimeout", "3601", "1..3600" },
    { "BrokerURL", "ftp://broker.example/", "http:// or https://" },
    { "BrokerURL", "broker.example", "http:// or https://" },
    { "Account", "has space", "visible ASCII" },
    { "Account", "quo\"te", "visible ASCII" },
    { "Account", "back\\slash", "visible ASCII" },
    { "Account", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "1..64" },
    { "StoreSize", "1023K", "1M..1024G" },
    { "StoreSize", "1025G", "1M..1024G" },
    { "Threshold", "0.000001 USD", "amount" },
    { "SiteBudget", "1 US", "amount" },
    { "DailyBudget", "abc", "amount" },
    { "Topup", "-1 USD", "amount" },
    { "PayWordOverHTTP", "yes", "on or off" },
    { "LogLevel", "verbose", "error, warn, info or debug" },
    { "Nonsense", "1", "unknown key" },
};

static void test_bad_values(void)
{
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wp_config before;

        wp_config_defaults(&cfg);
        before = cfg;
        if (set(bad[i].key, bad[i].value) != -1 || strstr(err, bad[i].msg) == NULL
            || strstr(err, bad[i].key) == NULL)
            fprintf(stderr, "\n  %s %s: \"%s\"\n", bad[i].key, bad[i].value, err);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, bad[i].msg));
        CU_ASSERT_EQUAL(memcmp(&before, &cfg, sizeof cfg), 0);  /* nothing changed */
    }
}

static void test_string_lengths(void)
{
    static const char *const keys[] = {
        "PortFile", "PidFile", "StateDir", "BrokerCAFile", "AccountKeyFile", "LogFile",
    };
    char v[513];
    size_t i;

    memset(v, 'f', sizeof v);
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        wp_config_defaults(&cfg);
        v[511] = '\0';
        CU_ASSERT_EQUAL(set(keys[i], v), 0);       /* 511 characters fit */
        v[511] = 'f';
        v[512] = '\0';
        CU_ASSERT_EQUAL(set(keys[i], v), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "must be 1..511 characters"));
        CU_ASSERT_EQUAL(set(keys[i], ""), -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(err, "needs a value"));
    }
    CU_ASSERT_EQUAL(set("Listen", NULL), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "Listen needs a value"));
}

static void test_list_limits(void)
{
    char v[32];
    unsigned i;

    wp_config_defaults(&cfg);
    cfg.nallow = 0;
    cfg.nconnect_ports = 0;
    for (i = 0; i < WP_MAX_ALLOW; i++) {
        snprintf(v, sizeof v, "10.0.0.%u", i);
        CU_ASSERT_EQUAL(set("Allow", v), 0);
        snprintf(v, sizeof v, "%u", 8000 + i);
        CU_ASSERT_EQUAL(set("ConnectPort", v), 0);
        snprintf(v, sizeof v, "h%u:80:127.0.0.1", i);
        CU_ASSERT_EQUAL(set("Resolve", v), 0);
    }
    CU_ASSERT_EQUAL(set("Allow", "10.0.1.0"), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "at most 16 times"));
    CU_ASSERT_EQUAL(set("ConnectPort", "9000"), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "at most 16 times"));
    CU_ASSERT_EQUAL(set("Resolve", "x:80:127.0.0.1"), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "at most 16 times"));
    CU_ASSERT_EQUAL(cfg.nallow, WP_MAX_ALLOW);
    CU_ASSERT_EQUAL(cfg.nconnect_ports, WP_MAX_CONNECT_PORTS);
    CU_ASSERT_EQUAL(cfg.nresolve, WP_MAX_RESOLVE);
}

static void test_file_replaces_set_appends(void)
{
    wp_config_defaults(&cfg);
    CU_ASSERT_EQUAL(parse("Allow 10.0.0.0/8\nConnectPort 8443\nallow 192.168.0.0/16\n"
                          "CONNECTPORT 9443\n"), 0);
    /* the file's first Allow / ConnectPort replaced the defaults, the rest added */
    CU_ASSERT_EQUAL_FATAL(cfg.nallow, 2);
    CU_ASSERT_EQUAL(cfg.allow[0].addr[0], 10);
    CU_ASSERT_EQUAL(cfg.allow[1].addr[0], 192);
    CU_ASSERT_EQUAL_FATAL(cfg.nconnect_ports, 2);
    CU_ASSERT_EQUAL(cfg.connect_ports[0], 8443);
    CU_ASSERT_EQUAL(cfg.connect_ports[1], 9443);
    /* a setting after the file (as -D does through wp_config_set) appends */
    CU_ASSERT_EQUAL(set("Allow", "172.16.0.0/12"), 0);
    CU_ASSERT_EQUAL(cfg.nallow, 3);
    CU_ASSERT_EQUAL(set("ConnectPort", "443"), 0);
    CU_ASSERT_EQUAL(cfg.nconnect_ports, 3);
    /* a second file replaces again (each file starts its lists afresh) */
    CU_ASSERT_EQUAL(parse("ConnectPort 1\n"), 0);
    CU_ASSERT_EQUAL(cfg.nconnect_ports, 1);
    CU_ASSERT_EQUAL(cfg.nallow, 3);
    /* a file without them keeps the defaults */
    wp_config_defaults(&cfg);
    CU_ASSERT_EQUAL(parse("MaxClients 8\n"), 0);
    CU_ASSERT_EQUAL(cfg.nallow, 2);
    CU_ASSERT_EQUAL(cfg.nconnect_ports, 1);
}

static void test_line_syntax(void)
{
    wp_config_defaults(&cfg);
    CU_ASSERT_EQUAL(parse("# comment\n\n   \n\t# indented comment\r\n"
                          "  Listen \t 127.0.0.1:9000  \r\n"
                          "StateDir \"/var/lib/with space\"\n"
                          "Threshold \"0.05 USD\"\n"
                          "account\tbob"), 0);    /* no final newline */
    CU_ASSERT_EQUAL(cfg.listen_port, 9000);
    CU_ASSERT_STRING_EQUAL(cfg.state_dir, "/var/lib/with space");
    CU_ASSERT_STRING_EQUAL(cfg.threshold, "0.05 USD");
    CU_ASSERT_STRING_EQUAL(cfg.account, "bob");
    CU_ASSERT_EQUAL(parse(""), 0);
    CU_ASSERT_EQUAL(parse("LogFile \"\"\n"), -1);      /* quotes around nothing: no value */
    CU_ASSERT_STRING_EQUAL(err, "t.conf:1: LogFile needs a value");
    CU_ASSERT_EQUAL(parse("StateDir \"x\n"), 0);       /* an unbalanced quote is kept */
    CU_ASSERT_STRING_EQUAL(cfg.state_dir, "\"x");
}

static void test_messages_name_file_and_line(void)
{
    wp_config_defaults(&cfg);
    CU_ASSERT_EQUAL(parse("Listen 8402\n# two\nMaxClients 5000\nMaxClients 1\n"), -1);
    CU_ASSERT_STRING_EQUAL(err, "t.conf:3: MaxClients must be 1..4096, not \"5000\"");
    CU_ASSERT_EQUAL(parse("\n\n\n\nFoo bar\n"), -1);
    CU_ASSERT_EQUAL(strncmp(err, "t.conf:5: unknown key \"Foo\" (known: Listen,", 42), 0);
    CU_ASSERT_EQUAL(parse("Listen\n"), -1);
    CU_ASSERT_STRING_EQUAL(err, "t.conf:1: Listen needs a value");
}

static void test_long_lines(void)
{
    char *t = malloc(5000);

    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    /* 4096 characters and a newline: accepted */
    memset(t, ' ', 4096);
    memcpy(t, "LogFile /", 9);
    memset(t + 9, 'l', 400);
    strcpy(t + 4096, "\nLogLevel warn\n");
    wp_config_defaults(&cfg);
    CU_ASSERT_EQUAL(parse(t), 0);
    CU_ASSERT_EQUAL(strlen(cfg.log_file), 401);
    CU_ASSERT_EQUAL(cfg.log_level, WP_LOG_WARN);
    /* 4097: refused with file and line */
    memmove(t + 1, t, strlen(t) + 1);
    t[0] = ' ';
    CU_ASSERT_EQUAL(parse(t), -1);
    CU_ASSERT_STRING_EQUAL(err, "t.conf:1: line longer than 4096 characters");
    free(t);
}

static void test_load_file(void)
{
    char path[] = "/tmp/wp_unit_confXXXXXX";
    int fd = mkstemp(path);
    static const char text[] = "Listen 8500\nAllow 10.0.0.0/8\nTopup 2 USD\nLogLevel loud\n";

    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    wp_config_defaults(&cfg);
    CU_ASSERT_EQUAL(wp_config_load(&cfg, path, err, sizeof err), -1);
    CU_ASSERT_EQUAL(strncmp(err, path, strlen(path)), 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ":4: LogLevel must be error, warn, info or debug, "
                                       "not \"loud\""));
    CU_ASSERT_EQUAL(cfg.listen_port, 8500);        /* the lines before were applied */
    CU_ASSERT_EQUAL(cfg.nallow, 1);
    fd = open(path, O_WRONLY | O_TRUNC);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_EQUAL(write(fd, text, 40), 40);     /* without the bad line */
    close(fd);
    wp_config_defaults(&cfg);
    CU_ASSERT_EQUAL(wp_config_load(&cfg, path, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(cfg.topup, "2.00 USD");
    unlink(path);
    CU_ASSERT_EQUAL(wp_config_load(&cfg, path, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, ": cannot open: "));
    CU_ASSERT_EQUAL(strncmp(err, path, strlen(path)), 0);
}

int register_config_tests(void)
{
    CU_pSuite s = CU_add_suite("wp_config", NULL, NULL);

    if (s == NULL || CU_add_test(s, "defaults", test_defaults) == NULL
        || CU_add_test(s, "every key: a good value", test_good_values) == NULL
        || CU_add_test(s, "every key: bad values refused", test_bad_values) == NULL
        || CU_add_test(s, "string lengths", test_string_lengths) == NULL
        || CU_add_test(s, "list limits", test_list_limits) == NULL
        || CU_add_test(s, "file replaces lists, set appends", test_file_replaces_set_appends)
           == NULL
        || CU_add_test(s, "line syntax", test_line_syntax) == NULL
        || CU_add_test(s, "messages name file and line", test_messages_name_file_and_line)
           == NULL
        || CU_add_test(s, "long lines", test_long_lines) == NULL
        || CU_add_test(s, "wp_config_load on files", test_load_file) == NULL)
        return -1;
    return 0;
}
