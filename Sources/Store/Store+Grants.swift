import Foundation
import Protocol
import Support

extension Store {
    /// Records a grant; the same owner, grantee, filter and access twice is `already_exists`.
    public func addGrant(owner: ProviderID, grantee: Grantee, filter: String, access: GrantAccess) throws -> Grant {
        try database.transaction { db in
            let existing = try db.query(
                "SELECT id FROM grants WHERE owner = ? AND grantee = ? AND filter = ? AND access = ?",
                [.text(owner.rawValue), .text(grantee.description), .text(filter), .text(access.rawValue)])
            guard existing.isEmpty else {
                throw VGWError(.alreadyExists, "the same grant exists already (id \(try existing[0].int(0)))")
            }
            let seconds = Date().timeIntervalSince1970
            try db.execute(
                "INSERT INTO grants (owner, grantee, filter, access, created_at) VALUES (?, ?, ?, ?, ?)",
                [
                    .text(owner.rawValue), .text(grantee.description), .text(filter), .text(access.rawValue),
                    .real(seconds),
                ])
            let id = try db.query("SELECT last_insert_rowid()")[0].int(0)
            return Grant(
                id: id, owner: owner, grantee: grantee, filter: filter, access: access,
                createdAt: Date(timeIntervalSince1970: seconds))
        }
    }

    public func grant(id: Int) throws -> Grant? {
        try database.withConnection { db in
            try db.query(
                "SELECT id, owner, grantee, filter, access, created_at FROM grants WHERE id = ?", [.integer(Int64(id))]
            ).first.map(Self.grantRecord)
        }
    }

    /// Every grant, by id.
    public func grants() throws -> [Grant] {
        try database.withConnection { db in
            try db.query("SELECT id, owner, grantee, filter, access, created_at FROM grants ORDER BY id")
                .map(Self.grantRecord)
        }
    }

    public func deleteGrant(id: Int) throws {
        try database.withConnection { db in
            guard try db.execute("DELETE FROM grants WHERE id = ?", [.integer(Int64(id))]) == 1 else {
                throw VGWError(.notFound, "no grant \(id)")
            }
        }
    }

    /// Removes the grants a provider owns or receives (it is being deleted); returns them.
    public func deleteGrants(involving provider: ProviderID) throws -> [Grant] {
        try database.transaction { db in
            let rows = try db.query(
                "SELECT id, owner, grantee, filter, access, created_at FROM grants WHERE owner = ? OR grantee = ?",
                [.text(provider.rawValue), .text(provider.rawValue)])
            try db.execute(
                "DELETE FROM grants WHERE owner = ? OR grantee = ?",
                [.text(provider.rawValue), .text(provider.rawValue)])
            return try rows.map(Self.grantRecord)
        }
    }

    private static func grantRecord(_ row: Row) throws -> Grant {
        let ownerText = try row.string(1)
        guard let owner = ownerText == ProviderID.core.rawValue ? ProviderID.core : ProviderID(rawValue: ownerText),
            let access = GrantAccess(rawValue: try row.string(4))
        else { throw VGWError(.storage, "grant row \(try row.int(0)) is not valid") }
        return Grant(
            id: try row.int(0), owner: owner, grantee: try Grantee(try row.string(2)), filter: try row.string(3),
            access: access, createdAt: Date(timeIntervalSince1970: try row.double(5)))
    }
}
