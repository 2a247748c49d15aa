#!/bin/sh
# A bundle in plain sh. vgwd hands it its broker identity in VGW_* variables; the
# password goes into mosquitto_pub/sub's own option files (mode 0600 in $HOME, the
# bundle's private state directory), never on a command line that `ps` would show.
set -eu
umask 077
for tool in mosquitto_pub mosquitto_sub; do
  mkdir -p "$HOME/.config"
  cat > "$HOME/.config/$tool" <<OPTS
-h $VGW_MQTT_HOST
-p $VGW_MQTT_PORT
-u $VGW_MQTT_USERNAME
-P $VGW_MQTT_PASSWORD
-i $VGW_MQTT_CLIENT_ID
-V mqttv5
OPTS
done
state="${VGW_TOPIC_PREFIX}thermometer/state"
mosquitto_pub -q 1 -t "$state/hello" -m "thermometer $VGW_BUNDLE_VERSION started"
n=0
while :; do
  n=$((n + 1))
  # A made-up reading around 21 degrees.
  mosquitto_pub -q 1 -r -t "$state/temperature" -m "$((20 + n % 3)).$((n % 10))"
  echo "published reading $n"
  sleep "${INTERVAL:-2}"
done
