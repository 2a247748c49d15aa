import Foundation

/// Every figure of the run: printed as a table, written as CSV, plotted.
final class Report {
    struct Row {
        var section: String
        var metric: String
        var value: Double
        var unit: String
    }

    private(set) var rows: [Row] = []
    /// Free-form remarks printed after the table (skipped plots, lost messages).
    private(set) var notes: [String] = []

    func add(_ section: String, _ metric: String, _ value: Double, _ unit: String) {
        rows.append(Row(section: section, metric: metric, value: value, unit: unit))
        print("  " + Self.line(section, metric, Self.format(value), unit))
        fflush(nil)
    }

    func note(_ text: String) {
        notes.append(text)
        print("  note: \(text)")
        fflush(nil)
    }

    func value(_ section: String, _ metric: String) -> Double? {
        rows.last { $0.section == section && $0.metric == metric }?.value
    }

    static func format(_ value: Double) -> String {
        if value.isNaN { return "n/a" }
        if abs(value) >= 1000 { return String(format: "%.0f", value) }
        if abs(value) >= 10 { return String(format: "%.1f", value) }
        return String(format: "%.3f", value)
    }

    static func line(_ section: String, _ metric: String, _ value: String, _ unit: String) -> String {
        func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
            let fill = String(repeating: " ", count: max(0, width - text.count))
            return left ? fill + text : text + fill
        }
        return pad(section, 12) + " " + pad(metric, 46) + " " + pad(value, 12, left: true) + " " + unit
    }

    func table() -> String {
        var lines = [Self.line("section", "metric", "value", "unit")]
        lines.append(String(repeating: "-", count: 84))
        for row in rows {
            lines.append(Self.line(row.section, row.metric, Self.format(row.value), row.unit))
        }
        for note in notes { lines.append("note: \(note)") }
        return lines.joined(separator: "\n")
    }

    func csv() -> String {
        var lines = ["section,metric,value,unit"]
        for row in rows {
            lines.append("\(row.section),\"\(row.metric)\",\(row.value.isNaN ? "" : "\(row.value)"),\(row.unit)")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
