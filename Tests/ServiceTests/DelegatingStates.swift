// A base for store doubles that stand in for the users' states alone: the embedded store behind them plays every
// other role, and a subclass changes one behaviour of loads and commits.
import Core
import Store

class DelegatingStates: UserStates, @unchecked Sendable {
    let inner: EmbeddedStore

    init(_ inner: EmbeddedStore) { self.inner = inner }

    /// The embedded store's roles, with this double's in place of its states.
    var roles: StoreRoles {
        var roles = StoreRoles(inner)
        roles.states = self
        return roles
    }

    func load(_ lookup: Lookup, completion: @escaping (Result<Loaded, StoreError>) -> Void) {
        inner.load(lookup, completion: completion)
    }

    func commit(_ commit: Commit, completion: @escaping (CommitResult) -> Void) {
        inner.commit(commit, completion: completion)
    }

    func policy(for tenantID: String) -> TenantPolicy { inner.policy(for: tenantID) }
}
