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
}
