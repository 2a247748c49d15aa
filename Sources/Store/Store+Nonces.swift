import Support

extension Store {
    /// Records a nonce; false if it was seen before (a replay). Expired nonces are dropped
    /// on the way, so the table holds only what can still be replayed.
    public func rememberNonce(_ nonce: String, until expires: Int64, now: Int64) throws -> Bool {
        try database.transaction { db in
            try db.execute("DELETE FROM nonces WHERE expires_at < ?", [.integer(now)])
            guard try db.query("SELECT 1 FROM nonces WHERE nonce = ?", [.text(nonce)]).isEmpty else { return false }
            try db.execute("INSERT INTO nonces (nonce, expires_at) VALUES (?, ?)", [.text(nonce), .integer(expires)])
            return true
        }
    }

    /// Keeps the response sent for a nonce's request, so that a duplicate of it (the
    /// sender's retry after a lost answer) gets the same answer instead of a second run.
    public func storeResponse(_ response: [UInt8], forNonce nonce: String) throws {
        try database.withConnection { db in
            _ = try db.execute("UPDATE nonces SET response = ? WHERE nonce = ?", [.blob(response), .text(nonce)])
        }
    }

    public func cachedResponse(forNonce nonce: String) throws -> [UInt8]? {
        try database.withConnection { db in
            guard let row = try db.query("SELECT response FROM nonces WHERE nonce = ?", [.text(nonce)]).first,
                case .blob(let bytes) = row.values[0]
            else { return nil }
            return bytes
        }
    }
}
