#!/usr/bin/env python3
"""A simulated heart-rate monitor: a vgwd bundle in Python 3 with paho-mqtt (1.6, Debian's
python3-paho-mqtt).

vgwd hands the service its broker identity in VGW_* variables. The rules every service
follows, whatever its language:
- connect with MQTT 5 and exactly VGW_MQTT_CLIENT_ID: the broker binds the identity to it;
- keep the password in memory (it comes from the environment, never a command line that
  `ps` would show);
- reconnect: the broker drops clients when their ACLs change, and may restart;
- publish only under VGW_TOPIC_PREFIX (vgw/<provider>/);
- exit 0 on SIGTERM.
"""
import json
import os
import random
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes


def env(name):
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"missing environment variable {name}: run this service under vgwd")
    return value


host, port = env("VGW_MQTT_HOST"), int(env("VGW_MQTT_PORT"))
prefix, bundle = env("VGW_TOPIC_PREFIX"), env("VGW_BUNDLE")
interval = float(os.environ.get("INTERVAL", "5"))
online = f"{prefix}_service/{bundle}/online"
stopping = threading.Event()
refused = threading.Event()
connected = threading.Event()

client = mqtt.Client(client_id=env("VGW_MQTT_CLIENT_ID"), protocol=mqtt.MQTTv5)
client.username_pw_set(env("VGW_MQTT_USERNAME"), env("VGW_MQTT_PASSWORD"))
client.will_set(online, "false", qos=1, retain=True)
client.reconnect_delay_set(min_delay=1, max_delay=30)


def on_connect(client, userdata, flags, reason, properties):
    if reason.value >= 0x80:
        # A refused identity cannot get better by retrying: exit, vgwd restarts us with a new one.
        print(f"connection refused: {reason}", file=sys.stderr, flush=True)
        refused.set()
        stopping.set()
        return
    print("connected", flush=True)
    connected.set()
    # After every (re)connect: the broker published the will when the connection dropped.
    client.publish(online, "true", qos=1, retain=True)


def on_disconnect(client, userdata, reason, properties):
    if not stopping.is_set():
        print(f"disconnected ({reason}); reconnecting", file=sys.stderr, flush=True)


client.on_connect = on_connect
client.on_disconnect = on_disconnect
signal.signal(signal.SIGTERM, lambda *_: stopping.set())
signal.signal(signal.SIGINT, lambda *_: stopping.set())

session = Properties(PacketTypes.CONNECT)
session.SessionExpiryInterval = 3600
# loop_start's thread reconnects by itself (with the delays above) once connect_async has
# been called, including when the broker is not up yet.
client.connect_async(host, port, keepalive=30, clean_start=False, properties=session)
client.loop_start()

# The first reading waits (bounded) for the first connection instead of a whole interval.
connected.wait(interval)
bpm = 70
while not stopping.is_set():
    bpm = max(50, min(120, bpm + random.randint(-3, 3)))
    reading = json.dumps({"bpm": bpm, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    if client.is_connected():
        client.publish(f"{prefix}health/heart-rate", reading, qos=1, retain=True)
        print(f"published {reading}", flush=True)
    stopping.wait(interval)

# A clean stop: clear the flag, then DISCONNECT so that the broker does not send the will.
if client.is_connected():
    client.publish(online, "false", qos=1, retain=True).wait_for_publish(timeout=2)
client.disconnect()
client.loop_stop()
print("stopped", flush=True)
sys.exit(1 if refused.is_set() else 0)
