/*
 * vgw_meter: per-provider metering and rate quotas inside Mosquitto 2.0.11.
 *
 * The broker is single threaded (2.0 has no worker threads), so the table needs no lock.
 * Every callback runs on the broker's main loop.
 */
#include "vgw_meter.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUCKETS 4096 /* power of two */

struct provider {
    struct provider *next; /* chain of one bucket */
    char *name;
    uint64_t messages_in, bytes_in, messages_out, bytes_out, denied;
    /* Quotas: 0 = unlimited. Token buckets hold at most one second of the rate. */
    double messages_per_second, bytes_per_second;
    double message_tokens, byte_tokens;
    int64_t refilled_ns;
};

static mosquitto_plugin_id_t *plugin_id;
static struct provider *table[BUCKETS];
static size_t provider_count;
static size_t max_providers = VGW_METER_MAX_PROVIDERS;
static int64_t stats_interval_ns = 1000000000LL;
static int64_t last_stats_ns;
static bool stats_dirty = true;
/* Clients of providers that did not fit in the table: not metered, logged once. */
static bool overflow_logged;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint32_t hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static struct provider *find(const char *name, size_t len, bool create)
{
    if (len == 0 || len > VGW_METER_MAX_PROVIDER_NAME) return NULL;
    uint32_t b = hash(name, len) & (BUCKETS - 1);
    for (struct provider *p = table[b]; p; p = p->next) {
        if (strlen(p->name) == len && memcmp(p->name, name, len) == 0) return p;
    }
    if (!create) return NULL;
    if (provider_count >= max_providers) {
        if (!overflow_logged) {
            mosquitto_log_printf(MOSQ_LOG_WARNING, "vgw-meter: %zu providers, new ones are not metered", provider_count);
            overflow_logged = true;
        }
        return NULL;
    }
    struct provider *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->name = strndup(name, len);
    if (!p->name) {
        free(p);
        return NULL;
    }
    p->refilled_ns = now_ns();
    p->next = table[b];
    table[b] = p;
    provider_count++;
    return p;
}

static void remove_provider(const char *name)
{
    size_t len = strlen(name);
    uint32_t b = hash(name, len) & (BUCKETS - 1);
    for (struct provider **link = &table[b]; *link; link = &(*link)->next) {
        struct provider *p = *link;
        if (strcmp(p->name, name) == 0) {
            *link = p->next;
            free(p->name);
            free(p);
            provider_count--;
            stats_dirty = true;
            return;
        }
    }
}

static void clear_table(void)
{
    for (size_t b = 0; b < BUCKETS; b++) {
        struct provider *p = table[b];
        while (p) {
            struct provider *next = p->next;
            free(p->name);
            free(p);
            p = next;
        }
        table[b] = NULL;
    }
    provider_count = 0;
}

/* The provider of a metered client: the username up to its first '.', or NULL for
 * clients that are not metered (no username, no '.', the core's own `core.*`). */
static struct provider *provider_of(struct mosquitto *client)
{
    const char *username = mosquitto_client_username(client);
    if (!username) return NULL;
    const char *dot = strchr(username, '.');
    if (!dot || dot == username) return NULL;
    size_t len = (size_t)(dot - username);
    if (len == 4 && memcmp(username, "core", 4) == 0) return NULL;
    return find(username, len, true);
}

static void refill(struct provider *p, int64_t now)
{
    double elapsed = (double)(now - p->refilled_ns) / 1e9;
    p->refilled_ns = now;
    if (elapsed < 0) elapsed = 0;
    if (p->messages_per_second > 0) {
        p->message_tokens += elapsed * p->messages_per_second;
        if (p->message_tokens > p->messages_per_second) p->message_tokens = p->messages_per_second;
    }
    if (p->bytes_per_second > 0) {
        p->byte_tokens += elapsed * p->bytes_per_second;
        if (p->byte_tokens > p->bytes_per_second) p->byte_tokens = p->bytes_per_second;
    }
}

/* Whether a message of `bytes` fits the quota; takes its tokens when it does. A message
 * larger than one second of bytes passes when the bucket is full and leaves a debt, so a
 * big message is slowed down, never refused forever. */
static bool admit(struct provider *p, uint32_t bytes)
{
    refill(p, now_ns());
    if (p->messages_per_second > 0 && p->message_tokens < 1.0) return false;
    if (p->bytes_per_second > 0) {
        double need = (double)bytes < p->bytes_per_second ? (double)bytes : p->bytes_per_second;
        if (p->byte_tokens < need) return false;
    }
    if (p->messages_per_second > 0) p->message_tokens -= 1.0;
    if (p->bytes_per_second > 0) p->byte_tokens -= (double)bytes;
    return true;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)userdata;
    struct mosquitto_evt_acl_check *ed = event_data;
    if (ed->access != MOSQ_ACL_WRITE && ed->access != MOSQ_ACL_READ) return MOSQ_ERR_PLUGIN_DEFER;
    struct provider *p = provider_of(ed->client);
    if (!p) return MOSQ_ERR_PLUGIN_DEFER;
    stats_dirty = true;
    if (ed->access == MOSQ_ACL_READ) {
        p->messages_out++;
        p->bytes_out += ed->payloadlen;
        return MOSQ_ERR_PLUGIN_DEFER;
    }
    if (!admit(p, ed->payloadlen)) {
        p->denied++;
        return MOSQ_ERR_ACL_DENIED;
    }
    p->messages_in++;
    p->bytes_in += ed->payloadlen;
    return MOSQ_ERR_PLUGIN_DEFER;
}

/* {"acme":{"messagesIn":..,...},...} */
static cJSON *providers_json(void)
{
    cJSON *providers = cJSON_CreateObject();
    if (!providers) return NULL;
    for (size_t b = 0; b < BUCKETS; b++) {
        for (struct provider *p = table[b]; p; p = p->next) {
            cJSON *o = cJSON_AddObjectToObject(providers, p->name);
            if (!o) continue;
            /* cJSON numbers are doubles: exact up to 2^53. */
            cJSON_AddNumberToObject(o, "messagesIn", (double)p->messages_in);
            cJSON_AddNumberToObject(o, "bytesIn", (double)p->bytes_in);
            cJSON_AddNumberToObject(o, "messagesOut", (double)p->messages_out);
            cJSON_AddNumberToObject(o, "bytesOut", (double)p->bytes_out);
            cJSON_AddNumberToObject(o, "denied", (double)p->denied);
            cJSON_AddNumberToObject(o, "messagesPerSecond", p->messages_per_second);
            cJSON_AddNumberToObject(o, "bytesPerSecond", p->bytes_per_second);
        }
    }
    return providers;
}

static void publish_json(const char *topic, cJSON *root)
{
    char *text = cJSON_PrintUnformatted(root);
    if (!text) return;
    /* publish_copy copies the payload; the broker owns nothing of ours afterwards. */
    mosquitto_broker_publish_copy(NULL, topic, (int)strlen(text), text, 0, false, NULL);
    free(text);
}

static void publish_stats(void)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return;
    cJSON *providers = providers_json();
    if (providers) cJSON_AddItemToObject(root, "providers", providers);
    publish_json(VGW_METER_STATS_TOPIC, root);
    cJSON_Delete(root);
}

static int on_tick(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)event_data;
    (void)userdata;
    if (stats_interval_ns <= 0 || !stats_dirty) return MOSQ_ERR_SUCCESS;
    int64_t now = now_ns();
    if (last_stats_ns != 0 && now - last_stats_ns < stats_interval_ns) return MOSQ_ERR_SUCCESS;
    last_stats_ns = now;
    stats_dirty = false;
    publish_stats();
    return MOSQ_ERR_SUCCESS;
}

/* A non-negative finite number field, or -1 when absent or invalid. */
static double rate_field(cJSON *command, const char *name)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(command, name);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 1e15) return -1;
    return v->valuedouble;
}

static const char *provider_field(cJSON *command)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(command, "provider");
    if (!cJSON_IsString(v) || !v->valuestring) return NULL;
    size_t len = strlen(v->valuestring);
    if (len == 0 || len > VGW_METER_MAX_PROVIDER_NAME || strchr(v->valuestring, '.')) return NULL;
    return v->valuestring;
}

/* Runs one command; returns an error text or NULL, and may add "data" to response. */
static const char *run_command(cJSON *command, cJSON *response)
{
    cJSON *name = cJSON_GetObjectItemCaseSensitive(command, "command");
    if (!cJSON_IsString(name) || !name->valuestring) return "Invalid command";
    if (strcmp(name->valuestring, "setQuota") == 0) {
        const char *provider = provider_field(command);
        if (!provider) return "Invalid/missing provider";
        double messages = rate_field(command, "messagesPerSecond");
        double bytes = rate_field(command, "bytesPerSecond");
        if (messages < 0 || bytes < 0) return "Invalid/missing messagesPerSecond or bytesPerSecond";
        struct provider *p = find(provider, strlen(provider), true);
        if (!p) return "Too many providers";
        refill(p, now_ns());
        p->messages_per_second = messages;
        p->bytes_per_second = bytes;
        /* A new or changed quota starts with a full bucket (one second's burst). */
        p->message_tokens = messages;
        p->byte_tokens = bytes;
        return NULL;
    }
    if (strcmp(name->valuestring, "removeProvider") == 0) {
        const char *provider = provider_field(command);
        if (!provider) return "Invalid/missing provider";
        remove_provider(provider);
        return NULL;
    }
    if (strcmp(name->valuestring, "getStats") == 0) {
        cJSON *data = cJSON_AddObjectToObject(response, "data");
        cJSON *providers = providers_json();
        if (!data || !providers) {
            cJSON_Delete(providers);
            return "Out of memory";
        }
        cJSON_AddItemToObject(data, "providers", providers);
        return NULL;
    }
    return "Unknown command";
}

static void respond_error(const char *command, const char *error)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *responses = cJSON_AddArrayToObject(root, "responses");
    cJSON *r = cJSON_CreateObject();
    if (root && responses && r) {
        cJSON_AddStringToObject(r, "command", command);
        cJSON_AddStringToObject(r, "error", error);
        cJSON_AddItemToArray(responses, r);
        publish_json(VGW_METER_RESPONSE_TOPIC, root);
    } else {
        cJSON_Delete(r);
    }
    cJSON_Delete(root);
}

static int on_control(int event, void *event_data, void *userdata)
{
    (void)event;
    (void)userdata;
    struct mosquitto_evt_control *ed = event_data;
    if (ed->payloadlen == 0 || !ed->payload) {
        respond_error("Unknown command", "Payload not valid JSON");
        return MOSQ_ERR_SUCCESS;
    }
    cJSON *tree = cJSON_ParseWithLength(ed->payload, ed->payloadlen);
    if (!tree) {
        respond_error("Unknown command", "Payload not valid JSON");
        return MOSQ_ERR_SUCCESS;
    }
    cJSON *commands = cJSON_GetObjectItemCaseSensitive(tree, "commands");
    if (!cJSON_IsArray(commands)) {
        cJSON_Delete(tree);
        respond_error("Unknown command", "Invalid/missing commands");
        return MOSQ_ERR_SUCCESS;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *responses = root ? cJSON_AddArrayToObject(root, "responses") : NULL;
    if (!responses) {
        cJSON_Delete(root);
        cJSON_Delete(tree);
        return MOSQ_ERR_NOMEM;
    }
    cJSON *command;
    cJSON_ArrayForEach(command, commands)
    {
        cJSON *response = cJSON_CreateObject();
        if (!response) break;
        cJSON *name = cJSON_GetObjectItemCaseSensitive(command, "command");
        cJSON_AddStringToObject(
            response, "command", cJSON_IsString(name) && name->valuestring ? name->valuestring : "Unknown command");
        const char *error = cJSON_IsObject(command) ? run_command(command, response) : "Invalid command";
        if (error) cJSON_AddStringToObject(response, "error", error);
        cJSON *correlation = cJSON_GetObjectItemCaseSensitive(command, "correlationData");
        if (cJSON_IsString(correlation) && correlation->valuestring) {
            cJSON_AddStringToObject(response, "correlationData", correlation->valuestring);
        }
        cJSON_AddItemToArray(responses, response);
    }
    publish_json(VGW_METER_RESPONSE_TOPIC, root);
    cJSON_Delete(root);
    cJSON_Delete(tree);
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    for (int i = 0; i < supported_version_count; i++) {
        if (supported_versions[i] == 5) return 5;
    }
    return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
                          int option_count)
{
    (void)userdata;
    plugin_id = identifier;
    for (int i = 0; i < option_count; i++) {
        if (!options[i].key || !options[i].value) continue;
        if (strcmp(options[i].key, "stats_interval") == 0) {
            char *end;
            errno = 0;
            double seconds = strtod(options[i].value, &end);
            if (errno || end == options[i].value || *end || !(seconds >= 0) || seconds > 86400) {
                mosquitto_log_printf(MOSQ_LOG_ERR, "vgw-meter: invalid stats_interval '%s'", options[i].value);
                return MOSQ_ERR_INVAL;
            }
            stats_interval_ns = (int64_t)(seconds * 1e9);
        } else if (strcmp(options[i].key, "max_providers") == 0) {
            char *end;
            errno = 0;
            unsigned long n = strtoul(options[i].value, &end, 10);
            if (errno || end == options[i].value || *end || n == 0 || n > 1000000) {
                mosquitto_log_printf(MOSQ_LOG_ERR, "vgw-meter: invalid max_providers '%s'", options[i].value);
                return MOSQ_ERR_INVAL;
            }
            max_providers = n;
        }
    }
    int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
    if (rc == MOSQ_ERR_SUCCESS) {
        rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_CONTROL, on_control, VGW_METER_CONTROL_TOPIC, NULL);
    }
    if (rc == MOSQ_ERR_SUCCESS) {
        rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_TICK, on_tick, NULL, NULL);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "vgw-meter: cannot register callbacks (%d)", rc);
        return rc;
    }
    mosquitto_log_printf(MOSQ_LOG_INFO, "vgw-meter: metering providers, control on %s", VGW_METER_CONTROL_TOPIC);
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
    (void)userdata;
    (void)options;
    (void)option_count;
    if (plugin_id) {
        mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
        mosquitto_callback_unregister(plugin_id, MOSQ_EVT_CONTROL, on_control, VGW_METER_CONTROL_TOPIC);
        mosquitto_callback_unregister(plugin_id, MOSQ_EVT_TICK, on_tick, NULL);
    }
    clear_table();
    plugin_id = NULL;
    return MOSQ_ERR_SUCCESS;
}
