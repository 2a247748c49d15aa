#ifndef VGW_METER_H
#define VGW_METER_H
/* A Mosquitto plugin: per-provider message and byte metering and rate quotas. */
int vgw_meter_version(void);
#endif
