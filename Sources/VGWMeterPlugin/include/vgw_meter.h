#ifndef VGW_METER_H
#define VGW_METER_H
/*
 * vgw_meter: a Mosquitto 2.0 plugin (plugin API version 5) for per-provider metering
 * and rate quotas. Loaded by the broker (`plugin /path/libvgw_meter.so`), never linked
 * into Swift. It must come BEFORE the dynamic security plugin in mosquitto.conf: 2.0.11
 * asks the ACL callbacks in registration order (= config file order) and stops at the
 * first answer other than MOSQ_ERR_PLUGIN_DEFER. The meter only ever answers DEFER or
 * (throttling a provider over its quota) MOSQ_ERR_ACL_DENIED, so dynsec still decides.
 *
 * Control: $CONTROL/vgw-meter/v1 (commands setQuota, removeProvider, getStats),
 * answers on $CONTROL/vgw-meter/v1/response, stats on $CONTROL/vgw-meter/v1/stats.
 *
 * Options (mosquitto.conf, after the plugin line):
 *   plugin_opt_stats_interval <seconds>  stats publication period, default 1, 0 = never
 *                                        (getStats only)
 *   plugin_opt_max_providers <n>         table cap, default 10000
 */
#define VGW_METER_CONTROL_TOPIC "$CONTROL/vgw-meter/v1"
#define VGW_METER_RESPONSE_TOPIC "$CONTROL/vgw-meter/v1/response"
#define VGW_METER_STATS_TOPIC "$CONTROL/vgw-meter/v1/stats"
#define VGW_METER_MAX_PROVIDERS 10000
#define VGW_METER_MAX_PROVIDER_NAME 128
#endif
