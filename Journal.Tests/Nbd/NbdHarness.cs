using Journal.Tests.Tools;
using Microsoft.Extensions.Logging;
using Snapshot;
using Snapshot.Nbd;

namespace Journal.Tests.Nbd;

/// <summary>
/// An <see cref="NbdServer"/> running in the test process over a store of real files in a fresh temporary folder,
/// listening on a Unix socket in that folder. Log lines are collected (<see cref="Log"/>) so tests can check that each
/// bad input produced one line and no stack trace. Disposing stops the server, closes the store and removes the folder.
/// </summary>
internal sealed class NbdHarness : IAsyncDisposable
{
    private NbdHarness(TempFolder folder, SnapshotStore store, NbdServer server, CollectingLoggerProvider log)
    {
        Folder = folder;
        Store = store;
        Server = server;
        Log = log;
    }

    public TempFolder Folder { get; }
    public SnapshotStore Store { get; }
    public NbdServer Server { get; }
    public CollectingLoggerProvider Log { get; }
    public string StorePath => Folder["store"];
    public string SocketPath => Folder["nbd.sock"];

    public static async Task<NbdHarness> StartAsync(long originBytes = 16 << 20, int chunkBytes = 4096, bool readOnly = false,
        int maxRequestsInFlight = NbdServerOptions.DefaultMaxRequestsInFlight, long maxBytesInFlight = NbdServerOptions.DefaultMaxBytesInFlight,
        int maxConnections = 256, Journal.Tests.Snapshot.TestDeviceProvider? devices = null,
        long maxServerBytesInFlight = NbdServerOptions.DefaultMaxServerBytesInFlight, TimeSpan? stalledClientTimeout = null,
        int? maxNegotiatingConnections = null, TimeSpan? handshakeTimeout = null)
    {
        var folder = new TempFolder();
        var log = new CollectingLoggerProvider();
        var options = new StoreOptions { OriginSectors = originBytes / 512, ChunkSectors = chunkBytes / 512, LogBlocks = 4096 };
        // With test devices the store lives in memory (crash-simulating devices); otherwise in real files.
        var store = devices is null
            ? await SnapshotStore.CreateAsync(folder["store"], options)
            : await SnapshotStore.CreateAsync(Journal.Tests.Snapshot.SnapTestUtil.Folder, devices.Options(options));
        var server = await NbdServer.StartAsync(store, new NbdServerOptions
        {
            UnixSockets = [folder["nbd.sock"]],
            ReadOnly = readOnly,
            MaxRequestsInFlight = maxRequestsInFlight,
            MaxBytesInFlight = maxBytesInFlight,
            MaxConnections = maxConnections,
            MaxNegotiatingConnections = maxNegotiatingConnections,
            HandshakeTimeout = handshakeTimeout ?? TimeSpan.FromSeconds(10),
            MaxServerBytesInFlight = maxServerBytesInFlight,
            StalledClientTimeout = stalledClientTimeout ?? TimeSpan.FromSeconds(30),
            ShutdownGrace = TimeSpan.FromSeconds(2),
            LoggerFactory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Debug).AddProvider(log)),
        });
        return new NbdHarness(folder, store, server, log);
    }

    public Task<RawNbdClient> ConnectAsync() => RawNbdClient.ConnectAsync(SocketPath);

    /// <summary>A client negotiated onto <paramref name="export"/>.</summary>
    public async Task<RawNbdClient> OpenAsync(string export = "", bool structured = true, params string[] contexts)
    {
        var c = await ConnectAsync();
        await c.NegotiateAsync(export, structured, contexts);
        return c;
    }

    /// <summary>Waits (watchdog) until <paramref name="condition"/> holds; polls, since it observes another thread's progress.</summary>
    public static async Task EventuallyAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + RawNbdClient.Watchdog;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"watchdog: {what} did not happen within {RawNbdClient.Watchdog}");
            await Task.Delay(10);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync().AsTask().WaitAsync(RawNbdClient.Watchdog);
        await Store.CloseAsync().AsTask().WaitAsync(RawNbdClient.Watchdog);
        Folder.Dispose();
    }
}

/// <summary>Collects log lines (level and text) in memory.</summary>
internal sealed class CollectingLoggerProvider : ILoggerProvider
{
    private readonly List<(LogLevel Level, string Text)> _lines = new();

    public IReadOnlyList<(LogLevel Level, string Text)> Lines { get { lock (_lines) return _lines.ToArray(); } }

    public bool Contains(string fragment) => Lines.Any(l => l.Text.Contains(fragment, StringComparison.Ordinal));

    public int Count(string fragment) => Lines.Count(l => l.Text.Contains(fragment, StringComparison.Ordinal));

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void Dispose() { }

    private sealed class Logger(CollectingLoggerProvider owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            string text = formatter(state, exception);
            if (exception is not null) text += "\n" + exception;
            lock (owner._lines) owner._lines.Add((logLevel, text));
        }
    }
}
