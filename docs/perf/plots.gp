set terminal pngcairo size 900,540 font ",11"
set grid
set key top left
set output "/tmp/bench-out3/memory.png"
set title "RSS against the number of VGWs"
set xlabel "providers (VGWs)"
set ylabel "RSS (MB)"
plot "/tmp/bench-out3/memory.dat" using 1:2 with linespoints lw 2 title "vgwd", \
     "" using 1:3 with linespoints lw 2 title "mosquitto + dynsec", \
     "" using 1:4 with linespoints lw 2 title "total"
set output "/tmp/bench-out3/acl-change.png"
set title "One ACL change (vgw.create) against the number of VGWs"
set logscale x
set ylabel "ms"
plot "/tmp/bench-out3/acl.dat" using 1:2 with linespoints lw 2 title "vgw.create p50", \
     "" using 1:4 with linespoints lw 2 title "max data-plane gap during the change", \
     "" using 1:5 with linespoints lw 2 title "max data-plane gap without changes"
unset logscale x
set key top right
set output "/tmp/bench-out3/throughput.png"
set title "Data-plane throughput, 100-byte payloads"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xlabel ""
set ylabel "messages/s"
set yrange [0:*]
plot "/tmp/bench-out3/dataplane.dat" using 2:xtic(1) title "raw mosquitto", \
     "" using 3 title "gateway (dynsec ACLs)"
set output "/tmp/bench-out3/latency.png"
set title "Data-plane latency, one message in flight"
set ylabel "ms"
plot "/tmp/bench-out3/dataplane.dat" using 4:xtic(1) title "raw p50", \
     "" using 5 title "gateway p50", "" using 6 title "raw p99", "" using 7 title "gateway p99"
