// The MQTT module.
