// What the store protocol answers synchronously from Redis's shared state, kept here and read again: the tenants'
// stored policies (at start, whenever an instance announces a save, and after the subscriber reconnects) and the
// gauges every instance reports (every refresh).
import Core
import Logging
import Store

/// `@unchecked Sendable`: confined to the event loop of the states' clients.
final class SharedReadings: @unchecked Sendable {
    private let states: RedisStates
    private let configuredPolicies: [String: TenantPolicy]
    private let logger: Logger
    private var storedPolicies: [String: TenantPolicy] = [:]
    private(set) var gauges = Gauges()

    init(states: RedisStates, configuredPolicies: [String: TenantPolicy], logger: Logger) {
        self.states = states
        self.configuredPolicies = configuredPolicies
        self.logger = logger
    }

    /// The tenant's policy: stored, else configured, else the default.
    func policy(for tenantID: String) -> TenantPolicy {
        storedPolicies[tenantID] ?? configuredPolicies[tenantID] ?? TenantPolicy()
    }

    /// A policy this instance saved.
    func saved(_ policy: TenantPolicy, for tenantID: String) {
        storedPolicies[tenantID] = policy
    }

    /// Reads the policies, then the gauges: an instance opens with both, so a restarted one reports at once.
    func readAll(completion: @escaping (Result<Void, StoreError>) -> Void) {
        states.loadPolicies { [self] loaded in
            switch loaded {
            case .failure(let error): completion(.failure(error))
            case .success(let policies):
                storedPolicies = policies
                states.gauges { [self] read in
                    completion(read.map { gauges = $0 })
                }
            }
        }
    }

    func refreshPolicies() {
        states.loadPolicies { [self] loaded in
            switch loaded {
            case .success(let policies): storedPolicies = policies
            case .failure(let error): logger.error("cannot read the policies: \(error)")
            }
        }
    }

    func refreshGauges() {
        states.gauges { [self] result in
            if case .success(let read) = result { gauges = read }
        }
    }
}
