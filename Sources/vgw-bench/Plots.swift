import Foundation
import Supervisor

/// gnuplot PNGs from the report's data; skipped (with a note) when gnuplot is missing.
enum Plots {
    static func locateGnuplot() -> String? {
        ["/usr/bin/gnuplot", "/usr/local/bin/gnuplot"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    struct Data {
        var levels: [ScaleBench.Level]
        var dataPlane: [(label: String, raw: DataPlaneBench.Result, gateway: DataPlaneBench.Result)]
    }

    static func write(_ data: Data, to directory: String, report: Report) async {
        guard let gnuplot = locateGnuplot() else {
            report.note("gnuplot not found: plots skipped (apt-get install -y gnuplot-nox)")
            return
        }
        var memory = "# providers vgwd_MB mosquitto_MB total_MB\n"
        for level in data.levels {
            memory += String(
                format: "%d %.3f %.3f %.3f\n", level.providers, Double(level.memory.vgwdKiB) / 1024,
                Double(level.memory.brokerKiB) / 1024, Double(level.memory.totalKiB) / 1024)
        }
        var acl = "# providers create_p50_ms create_max_ms stall_ms baseline_gap_ms\n"
        for level in data.levels where !level.createMs.isNaN {
            acl += String(
                format: "%d %.3f %.3f %.3f %.3f\n", level.providers, level.createMs, level.createMaxMs,
                level.stallMs, level.baselineGapMs)
        }
        var plane = "# label raw_msgs gateway_msgs raw_p50 gateway_p50 raw_p99 gateway_p99\n"
        for entry in data.dataPlane {
            plane += "\"\(entry.label)\" "
            plane += String(
                format: "%.1f %.1f %.4f %.4f %.4f %.4f\n", entry.raw.rate, entry.gateway.rate,
                entry.raw.latency.p50, entry.gateway.latency.p50, entry.raw.latency.p99, entry.gateway.latency.p99)
        }
        let files = ["memory.dat": memory, "acl.dat": acl, "dataplane.dat": plane]
        for (name, text) in files {
            try? text.write(toFile: directory + "/" + name, atomically: true, encoding: .utf8)
        }
        let script = """
            set terminal pngcairo size 900,540 font ",11"
            set grid
            set key top left
            set output "\(directory)/memory.png"
            set title "RSS against the number of VGWs"
            set xlabel "providers (VGWs)"
            set ylabel "RSS (MB)"
            plot "\(directory)/memory.dat" using 1:2 with linespoints lw 2 title "vgwd", \\
                 "" using 1:3 with linespoints lw 2 title "mosquitto + dynsec", \\
                 "" using 1:4 with linespoints lw 2 title "total"
            set output "\(directory)/acl-change.png"
            set title "One ACL change (vgw.create) against the number of VGWs"
            set logscale x
            set ylabel "ms"
            plot "\(directory)/acl.dat" using 1:2 with linespoints lw 2 title "vgw.create p50", \\
                 "" using 1:4 with linespoints lw 2 title "max data-plane gap during the change", \\
                 "" using 1:5 with linespoints lw 2 title "max data-plane gap without changes"
            unset logscale x
            set key top right
            set output "\(directory)/throughput.png"
            set title "Data-plane throughput, 100-byte payloads"
            set style data histograms
            set style histogram clustered gap 1
            set style fill solid 0.8 border -1
            set xlabel ""
            set ylabel "messages/s"
            set yrange [0:*]
            plot "\(directory)/dataplane.dat" using 2:xtic(1) title "raw mosquitto", \\
                 "" using 3 title "gateway (dynsec ACLs)"
            set output "\(directory)/latency.png"
            set title "Data-plane latency, one message in flight"
            set ylabel "ms"
            plot "\(directory)/dataplane.dat" using 4:xtic(1) title "raw p50", \\
                 "" using 5 title "gateway p50", "" using 6 title "raw p99", "" using 7 title "gateway p99"

            """
        let scriptFile = directory + "/plots.gp"
        do {
            try script.write(toFile: scriptFile, atomically: true, encoding: .utf8)
            let process = try await ChildProcess.spawn(
                SpawnRequest(
                    executable: gnuplot, arguments: [scriptFile], stdout: .null,
                    stderr: .file(path: directory + "/gnuplot.log")))
            let status = await process.wait()
            if status != .exited(0) { report.note("gnuplot failed (\(status)); see \(directory)/gnuplot.log") }
        } catch {
            report.note("gnuplot could not run: \(error)")
        }
    }
}
