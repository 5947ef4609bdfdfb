// A Redis client on an event loop: hiredis's asynchronous API over one connection, with what hiredis 0.14 lacks —
// a timeout per command and per connect (loop timers), reconnect with backoff and jitter, a probe on a quiet
// connection, AUTH and SELECT from the URL. Commands sent in one loop turn leave in one write (pipelined); replies
// come back in order. While the connection is not ready, a command fails at once: callers answer 503, not hang.
// A host name in the URL is resolved by hiredis, blocking the loop for that moment: use an address where that
// matters.
import CHiredis
import CHiredisLibevent
import DequeModule
import EventLoop
import Logging

/// `@unchecked Sendable`: confined to the event loop it was made on; hiredis calls back on that loop only.
public final class RedisClient: @unchecked Sendable {
    public struct Options: Sendable {
        /// How long a command (and a connect) may wait for its reply.
        public var commandTimeoutSeconds = 1.0
        /// A connection with no reply for this long is probed (PING; a subscriber subscribes to a channel of its
        /// own): a peer that vanished (a host down, a network cut) otherwise looks connected until the kernel
        /// gives up, minutes later.
        public var probeAfterQuietSeconds = 1.0
        public var firstReconnectSeconds = 0.05
        public var maxReconnectSeconds = 2.0
        /// Commands waiting for their replies at once; past it a command fails at once (`unavailable`): memory
        /// for commands stays bounded whatever the load, and an overloaded store answers 503 instead of queueing.
        public var maxInFlight = 10_000

        public init() {}
    }

    /// What waits for a reply, oldest first: hiredis answers in order.
    private struct Waiting {
        let completion: (Result<RedisValue, RedisError>) -> Void
        let deadline: Double
    }

    public let url: RedisURL
    private let loop: EventLoop
    private let options: Options
    private let logger: Logger
    private var machine: RedisConnectionStateMachine
    private var context: UnsafeMutablePointer<redisAsyncContext>?
    private var waiting = Deque<Waiting>()
    /// The error the commands still waiting get when their connection is dropped.
    private var dropError = RedisClient.lost
    private var lastReplyAt = 0.0
    private var random = SystemRandomNumberGenerator()
    private lazy var deadlineTimer = loop.makeTimer { [unowned self] in deadlinePassed() }
    private lazy var reconnectTimer = loop.makeTimer { [unowned self] in perform(machine.reconnectDue()) }
    private lazy var probeTimer = loop.makeTimer { [unowned self] in probe() }

    /// Set by `subscribe(to:onMessage:)`: the connection then carries subscriptions only.
    private var subscription: Subscription?

    private struct Subscription {
        let channels: [String]
        /// Subscribed to again as the quiet connection's probe: in RESP2's subscribed state hiredis 0.14 cannot
        /// route a PING's reply, but a subscription's confirmation comes back through the channel's callback.
        let probeChannel: String
        let onMessage: (String, [UInt8]) -> Void
        var probeDeadline: Double?
    }

    /// Runs each time the connection becomes ready (the first time and after every reconnect): what a previous
    /// connection was told (subscriptions, streams to resync) starts again here.
    public var onReady: (() -> Void)?
    /// Runs when a ready connection is lost.
    public var onLost: ((RedisError) -> Void)?

    public init(url: RedisURL, loop: EventLoop, options: Options = Options(), logger: Logger) {
        self.url = url
        self.loop = loop
        self.options = options
        self.logger = logger
        machine = RedisConnectionStateMachine(
            needsLogIn: url.password != nil || url.database != 0,
            backoff: .init(firstSeconds: options.firstReconnectSeconds, maxSeconds: options.maxReconnectSeconds))
    }

    deinit { assert(context == nil, "close() a RedisClient before letting it go") }

    public var isReady: Bool { machine.isReady }

    /// Makes this a subscriber (call before `start()`): on each connection it subscribes to `channels` with classic
    /// SUBSCRIBE (hiredis 0.14 aborts on the messages of SSUBSCRIBE) and hands every message to `onMessage`. A
    /// subscriber sends no other commands. Messages published while it was reconnecting are lost: `onReady` is
    /// where its owner catches up.
    public func subscribe(to channels: [String], onMessage: @escaping (_ channel: String, _ payload: [UInt8]) -> Void) {
        loop.assertInLoop()
        precondition(machine.state == .idle, "subscribe before start")
        subscription = Subscription(
            channels: channels, probeChannel: "ap:probe:\(UInt64.random(in: 0...UInt64.max, using: &random))",
            onMessage: onMessage)
    }

    /// Connects (and keeps reconnecting) until `close()`.
    public func start() {
        loop.assertInLoop()
        perform(machine.start())
    }

    /// Drops the connection; commands waiting get `.closed`, later ones too.
    public func close() {
        loop.assertInLoop()
        perform(machine.close())
    }

    /// Sends one command; `completion` runs on the loop exactly once, with the reply (an error reply is a value:
    /// the command ran) or why there is none.
    public func send(_ arguments: [String], completion: @escaping (Result<RedisValue, RedisError>) -> Void) {
        send(arguments.map { Array($0.utf8) }, completion: completion)
    }

    public func send(_ arguments: [[UInt8]], completion: @escaping (Result<RedisValue, RedisError>) -> Void) {
        loop.assertInLoop()
        guard subscription == nil else { return completion(.failure(.unavailable("a subscriber sends no commands"))) }
        guard machine.isReady, let context else {
            return completion(.failure(machine.state == .closed ? .closed : .unavailable(notReadyReason)))
        }
        guard waiting.count < options.maxInFlight else {
            return completion(.failure(.unavailable("\(options.maxInFlight) commands already wait for Redis")))
        }
        commandsSent += 1
        write(arguments, on: context, completion: completion)
    }

    /// Commands sent so far (those refused at once aside): what the instance costs Redis in calls.
    public private(set) var commandsSent = 0

    private var notReadyReason: String {
        switch machine.state {
        case .waitingToReconnect, .connecting(attempt: 1...): "not connected to \(url), reconnecting"
        default: "connecting to \(url)"
        }
    }

    // MARK: Actions

    private func perform(_ action: RedisConnectionStateMachine.Action) {
        switch action {
        case .connect: connect()
        case .logIn: logIn()
        case .announceReady:
            logger.info("connected to Redis", metadata: ["url": "\(url)"])
            lastReplyAt = monotonicSeconds()
            if let subscription, let context {
                subscribe(on: context, to: subscription.channels + [subscription.probeChannel])
            }
            probeTimer.schedule(after: options.probeAfterQuietSeconds)
            onReady?()
        case .reconnect(let delay, let error, let wasReady):
            // The owner hears of the loss before the commands that waited fail: it is not ready any more.
            if wasReady { onLost?(error) }
            drop(failing: error)
            logger.warning(
                "Redis connection failed; reconnecting",
                metadata: ["url": "\(url)", "error": "\(error)", "in_ms": "\(Int(delay * 1000))"])
            reconnectTimer.schedule(after: delay)
        case .shutDown:
            drop(failing: .closed)
            reconnectTimer.cancel()
            probeTimer.cancel()
        case .none: break
        }
    }

    private func fail(_ error: RedisError) {
        perform(machine.failed(error, unit: Double.random(in: 0...1, using: &random)))
    }

    private func connect() {
        guard let made = redisAsyncConnect(url.host, Int32(url.port)) else {
            return fail(.unavailable("cannot allocate a connection"))
        }
        if made.pointee.err != 0 {
            let why = String(cString: made.pointee.errstr)
            redisAsyncFree(made)
            return fail(.unavailable("cannot connect to \(url): \(why)"))
        }
        made.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        guard approvald_redis_attach(made, loop.libeventBase) == 0 else {
            redisAsyncFree(made)
            return fail(.unavailable("cannot attach the connection to the loop"))
        }
        redisAsyncSetConnectCallback(made) { context, status in
            RedisClient.owner(of: context)?.connectFinished(context, ok: status == REDIS_OK)
        }
        redisAsyncSetDisconnectCallback(made) { context, status in
            RedisClient.owner(of: context)?.disconnected(context)
        }
        context = made
        // hiredis 0.14 has no connect timeout: the deadline timer stands in for it.
        deadlineTimer.schedule(after: options.commandTimeoutSeconds)
    }

    private func logIn() {
        guard let context else { return }
        var commands: [[String]] = []
        if let password = url.password { commands.append(["AUTH"] + (url.user.map { [$0] } ?? []) + [password]) }
        if url.database != 0 { commands.append(["SELECT", String(url.database)]) }
        var remaining = commands.count
        for command in commands {
            write(command.map { Array($0.utf8) }, on: context) { [unowned self] result in
                switch result {
                case .success(.error(let message)):
                    // The password is never logged: the command's name and the server's answer are enough.
                    fail(.unavailable("\(command[0]) refused by \(url): \(message)"))
                case .failure(let error): fail(error)
                case .success:
                    remaining -= 1
                    if remaining == 0 { perform(machine.loggedIn()) }
                }
            }
        }
    }

    private func probe() {
        guard machine.isReady, let context else { return }
        let quiet = monotonicSeconds() - lastReplyAt
        guard quiet >= options.probeAfterQuietSeconds, waiting.isEmpty else {
            return probeTimer.schedule(after: max(0.01, options.probeAfterQuietSeconds - quiet))
        }
        if let probeChannel = subscription?.probeChannel {
            subscription?.probeDeadline = monotonicSeconds() + options.commandTimeoutSeconds
            deadlineTimer.schedule(after: options.commandTimeoutSeconds)
            return subscribe(on: context, to: [probeChannel])
        }
        send(["PING"]) { [unowned self] _ in
            // A failed probe has already dropped the connection (timeout or loss); a reply rescheduled nothing.
            if machine.isReady { probeTimer.schedule(after: options.probeAfterQuietSeconds) }
        }
    }

    // MARK: hiredis

    private static func owner(of context: UnsafePointer<redisAsyncContext>?) -> RedisClient? {
        guard let data = context?.pointee.data else { return nil }
        return Unmanaged<RedisClient>.fromOpaque(data).takeUnretainedValue()
    }

    /// Hands a command to hiredis with the callback its replies go to; false when the connection is closing.
    private static func command(
        _ arguments: [[UInt8]], on context: UnsafeMutablePointer<redisAsyncContext>,
        replies:
            @escaping @convention(c) (
                UnsafeMutablePointer<redisAsyncContext>?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?
            ) -> Void
    ) -> Bool {
        // One buffer for every argument: hiredis copies them into its output buffer before returning.
        let bytes = arguments.flatMap { $0 }
        let lengths = arguments.map(\.count)
        return bytes.withUnsafeBufferPointer { buffer -> Bool in
            var pointers: [UnsafePointer<CChar>?] = []
            pointers.reserveCapacity(arguments.count)
            var offset = 0
            let base = UnsafeRawPointer(buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!)
            for length in lengths {
                pointers.append((base + offset).assumingMemoryBound(to: CChar.self))
                offset += length
            }
            return pointers.withUnsafeMutableBufferPointer { argv in
                redisAsyncCommandArgv(context, replies, nil, Int32(arguments.count), argv.baseAddress, lengths)
            } == REDIS_OK
        }
    }

    /// SUBSCRIBE: hiredis keeps the callback per channel and calls it for each message and confirmation.
    private func subscribe(on context: UnsafeMutablePointer<redisAsyncContext>, to channels: [String]) {
        let arguments = (["SUBSCRIBE"] + channels).map { Array($0.utf8) }
        _ = Self.command(arguments, on: context) { context, reply, _ in
            RedisClient.owner(of: context)?.published(reply)
        }
    }

    /// A message or a subscription's confirmation; nil for each subscription when hiredis frees the connection.
    private func published(_ reply: UnsafeMutableRawPointer?) {
        guard let reply, var subscription,
            case .array(let parts) = RedisValue(reply: reply.assumingMemoryBound(to: redisReply.self)),
            parts.count == 3, let kind = parts[0].string, let channel = parts[1].string
        else { return }
        lastReplyAt = monotonicSeconds()
        switch kind {
        case "message":
            guard case .bulk(let payload) = parts[2] else { return }
            subscription.onMessage(channel, payload)
        case "subscribe" where channel == subscription.probeChannel && subscription.probeDeadline != nil:
            subscription.probeDeadline = nil
            self.subscription = subscription
            deadlineTimer.cancel()
            probeTimer.schedule(after: options.probeAfterQuietSeconds)
        default: break
        }
    }

    private func write(
        _ arguments: [[UInt8]], on context: UnsafeMutablePointer<redisAsyncContext>,
        completion: @escaping (Result<RedisValue, RedisError>) -> Void
    ) {
        let written = Self.command(arguments, on: context) { context, reply, _ in
            RedisClient.owner(of: context)?.replied(reply)
        }
        guard written else { return completion(.failure(.unavailable("the connection is closing"))) }
        let deadline = monotonicSeconds() + options.commandTimeoutSeconds
        if waiting.isEmpty { deadlineTimer.schedule(after: options.commandTimeoutSeconds) }
        waiting.append(Waiting(completion: completion, deadline: deadline))
    }

    private func connectFinished(_ connecting: UnsafePointer<redisAsyncContext>?, ok: Bool) {
        guard let context, UnsafePointer(context) == connecting else { return }
        deadlineTimer.cancel()
        guard ok else {
            // hiredis frees a context whose connect failed, right after this callback.
            let why = String(cString: context.pointee.errstr)
            self.context = nil
            return fail(.unavailable("cannot connect to \(url): \(why)"))
        }
        perform(machine.connected())
    }

    /// A reply, or nil for each command still waiting when hiredis frees the connection.
    private func replied(_ reply: UnsafeMutableRawPointer?) {
        guard let next = waiting.popFirst() else { return }
        if let reply {
            lastReplyAt = monotonicSeconds()
            if let head = waiting.first {
                deadlineTimer.schedule(after: max(0, head.deadline - lastReplyAt))
            } else {
                deadlineTimer.cancel()
            }
            next.completion(.success(RedisValue(reply: reply.assumingMemoryBound(to: redisReply.self))))
        } else {
            next.completion(.failure(dropError))
            // Only the oldest timed out; the others were merely behind it.
            if case .timedOut = dropError { dropError = Self.lost }
        }
    }

    /// hiredis lost the connection (and frees it after this callback), or we freed it ourselves.
    private func disconnected(_ lost: UnsafePointer<redisAsyncContext>?) {
        guard let context, UnsafePointer(context) == lost else { return }
        self.context = nil
        fail(.unavailable("the connection to \(url) was lost"))
    }

    private func deadlinePassed() {
        if case .connecting = machine.state, context != nil {
            return fail(.timedOut(seconds: options.commandTimeoutSeconds))
        }
        if let deadline = subscription?.probeDeadline {
            let now = monotonicSeconds()
            guard deadline <= now else { return deadlineTimer.schedule(after: deadline - now) }
            subscription?.probeDeadline = nil
            return fail(.timedOut(seconds: options.commandTimeoutSeconds))
        }
        guard let head = waiting.first else { return }
        let now = monotonicSeconds()
        guard head.deadline <= now else { return deadlineTimer.schedule(after: head.deadline - now) }
        fail(.timedOut(seconds: options.commandTimeoutSeconds))
    }

    /// Frees the connection, if any: every command still waiting gets `error` (after a timeout, only the oldest
    /// gets the timeout; those behind it were merely waiting).
    private func drop(failing error: RedisError) {
        deadlineTimer.cancel()
        probeTimer.cancel()
        subscription?.probeDeadline = nil
        dropError = error
        if let context {
            self.context = nil
            // Calls `replied(nil)` for each command still waiting.
            redisAsyncFree(context)
        }
        while let next = waiting.popFirst() {
            next.completion(.failure(dropError))
            if case .timedOut = dropError { dropError = Self.lost }
        }
        dropError = Self.lost
    }

    private static let lost = RedisError.unavailable("the connection was lost")
}
