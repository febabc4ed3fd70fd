using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Journal;
using Journal.Tools;
using Microsoft.Extensions.Logging;
using SnapCtl.Control;
using Snapshot;
using Snapshot.Nbd;

namespace SnapCtl.Commands;

/// <summary>
/// <c>snapctl serve &lt;store&gt; (--socket &lt;path&gt; | --listen &lt;host:port&gt;) [--read-only] [--defer-writes] [limits]</c>:
/// serves the origin and every snapshot over NBD until SIGINT or SIGTERM, and answers the other snapctl commands on
/// the store's control socket meanwhile.
/// </summary>
internal static class ServeCommand
{
    /// <summary>The default TCP port of NBD.</summary>
    public const int DefaultPort = 10809;

    public static Command Create(ToolConsole console)
    {
        var store = CommonOptions.Path("store", "The store folder.");
        var socket = new Option<string?>("--socket") { Description = "Serve on this Unix socket (created with mode 0600).", HelpName = "path" };
        var listen = new Option<string?>("--listen")
        {
            Description = $"Serve on TCP at host:port (host defaults to 127.0.0.1, port to {DefaultPort}; port 0 picks a free one).",
            HelpName = "host:port",
        };
        var readOnly = new Option<bool>("--read-only") { Description = "Serve every export read-only." };
        var deferWrites = new Option<bool>("--defer-writes")
        {
            Description = "Reply to an origin write that needs copies once they are written and queued for commit; its origin write follows the commit " +
                "(StoreOptions.DeferCopiedWrites). Durability is unchanged: a flush waits for such writes; a FUA write is never deferred.",
        };
        var maxConnections = new Option<int>("--max-connections")
        {
            Description = "Most client connections at once.",
            DefaultValueFactory = _ => 256,
            HelpName = "n",
        };
        var maxNegotiating = new Option<int?>("--max-negotiating")
        {
            Description = "Most connections still negotiating (past it the one negotiating longest is closed; default a quarter of --max-connections).",
            HelpName = "n",
        };
        var handshakeTimeout = new Option<double>("--handshake-timeout")
        {
            Description = "Seconds a client has to finish the handshake.",
            DefaultValueFactory = _ => 10,
            HelpName = "seconds",
        };
        var maxRequests = new Option<int>("--max-requests-per-connection")
        {
            Description = "Most requests one connection has in flight (at the bound its socket is not read).",
            DefaultValueFactory = _ => NbdServerOptions.DefaultMaxRequestsInFlight,
            HelpName = "n",
        };
        var maxBytes = CommonOptions.Size("--max-bytes-per-connection",
            "Most payload bytes one connection has in flight (at least 32M, one largest request).", NbdServerOptions.DefaultMaxBytesInFlight);
        var maxServerBytes = CommonOptions.Size("--max-bytes-in-flight",
            "Most payload bytes all connections together have in flight: the server's buffer memory (at least 32M).", NbdServerOptions.DefaultMaxServerBytesInFlight);
        var stalledTimeout = new Option<double>("--stalled-client-timeout")
        {
            Description = "While requests wait for buffer room, seconds without progress (a reply not taken, a write's data not sent) after which a connection holding room is closed.",
            DefaultValueFactory = _ => 30,
            HelpName = "seconds",
        };
        var command = new Command("serve",
            "Serve the origin and every snapshot as NBD exports (origin, or the empty name, and each snapshot's name) until SIGINT/SIGTERM. " +
            "While it runs, 'snapshot create|delete|merge' and 'status' on the store go to this process.")
        {
            store, socket, listen, readOnly, maxConnections, deferWrites, maxNegotiating, handshakeTimeout, maxRequests, maxBytes, maxServerBytes, stalledTimeout,
        };
        command.SetAction(r => RunAsync(console, r.GetValue(store)!, r.GetValue(socket), r.GetValue(listen), r.GetValue(readOnly), r.GetValue(deferWrites),
            new ServeLimits(r.GetValue(maxConnections), r.GetValue(maxNegotiating), Seconds("--handshake-timeout", r.GetValue(handshakeTimeout)),
                r.GetValue(maxRequests), r.GetValue(maxBytes), r.GetValue(maxServerBytes), Seconds("--stalled-client-timeout", r.GetValue(stalledTimeout)))));
        return command;
    }

    /// <summary>The server's limits as the options gave them (checked by <see cref="NbdServerOptions.Validate"/>, exit 64).</summary>
    private sealed record ServeLimits(int MaxConnections, int? MaxNegotiating, TimeSpan HandshakeTimeout, int MaxRequestsPerConnection,
        long MaxBytesPerConnection, long MaxBytesInFlight, TimeSpan StalledClientTimeout);

    /// <summary>A timeout option in seconds: positive and at most a day; anything else is a usage error.</summary>
    private static TimeSpan Seconds(string option, double seconds) =>
        double.IsFinite(seconds) && seconds > 0 && seconds <= 86_400
            ? TimeSpan.FromSeconds(seconds)
            : throw new UsageException(string.Create(CultureInfo.InvariantCulture, $"{option}: {seconds} must be more than 0 and at most 86400 seconds"));

    /// <summary>Parses <c>--listen</c>: "host:port", ":port", "port", "[v6]:port"; the host defaults to loopback.</summary>
    public static IPEndPoint ParseListen(string text)
    {
        string host = "127.0.0.1", port = text;
        if (text.StartsWith('['))
        {
            int close = text.IndexOf(']');
            if (close < 0) throw new UsageException($"--listen: '{text}' has no closing ']'");
            host = text[1..close];
            port = text[(close + 1)..].TrimStart(':');
        }
        else if (text.LastIndexOf(':') is int colon and >= 0)
        {
            if (colon > 0) host = text[..colon];
            port = text[(colon + 1)..];
        }
        else if (!text.All(char.IsAsciiDigit))
        {
            host = text;
            port = DefaultPort.ToString(CultureInfo.InvariantCulture);
        }
        if (port.Length == 0) port = DefaultPort.ToString(CultureInfo.InvariantCulture);
        if (!int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out int p) || p > 65535)
            throw new UsageException($"--listen: '{port}' is not a port number (0 to 65535)");
        IPAddress address;
        if (host == "localhost") address = IPAddress.Loopback;
        else if (!IPAddress.TryParse(host, out address!))
            throw new UsageException($"--listen: '{host}' is not an IP address (use 127.0.0.1, ::1, 0.0.0.0 or localhost)");
        return new IPEndPoint(address, p);
    }

    private static async Task<int> RunAsync(ToolConsole console, string store, string? socketPath, string? listen, bool readOnly, bool deferWrites,
        ServeLimits limits)
    {
        if (OperatingSystem.IsWindows()) throw new ToolException(ExitCodes.Failure, "serve needs Unix sockets and signals (Linux)");
        if (socketPath is null && listen is null) throw new UsageException("serve: give --socket <path> or --listen <host:port> (or both)");
        if (limits.MaxConnections < 1) throw new UsageException($"--max-connections: {limits.MaxConnections} must be at least 1");
        var tcp = listen is null ? [] : new[] { ParseListen(listen) };
        NbdServerOptions ServerOptions(ILoggerFactory logTo) => new()
        {
            UnixSockets = socketPath is null ? [] : [socketPath],
            TcpEndpoints = tcp,
            ReadOnly = readOnly,
            MaxConnections = limits.MaxConnections,
            MaxNegotiatingConnections = limits.MaxNegotiating,
            HandshakeTimeout = limits.HandshakeTimeout,
            MaxRequestsInFlight = limits.MaxRequestsPerConnection,
            MaxBytesInFlight = limits.MaxBytesPerConnection,
            MaxServerBytesInFlight = limits.MaxBytesInFlight,
            StalledClientTimeout = limits.StalledClientTimeout,
            LoggerFactory = logTo,
        };
        // Every limit checked before the store is opened (a bad value is a usage error, exit 64, with nothing opened).
        ServerOptions(Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance).Validate();
        StoreCommands.RequireStore(store);

        using var loggerFactory = LoggerFactory.Create(b => b
            .SetMinimumLevel(ErrorMap.Debug ? LogLevel.Debug : LogLevel.Information)
            .AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace)
            .AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
                o.IncludeScopes = false;
            }));
        var log = loggerFactory.CreateLogger("snapctl.serve");

        var stop = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult("SIGINT"); });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult("SIGTERM"); });

        // The store and its journal log through the same factory as the server (warnings: replays, invalidations...).
        var s = await StoreCommands.OpenAsync(console, store, loggerFactory: loggerFactory, deferCopiedWrites: deferWrites).ConfigureAwait(false);
        NbdServer? server = null;
        ControlServer? control = null;
        try
        {
            server = await NbdServer.StartAsync(s, ServerOptions(loggerFactory)).ConfigureAwait(false);
            control = ControlServer.Start(server, store, log);
            log.LogInformation("serving store {Store}: exports origin{Snapshots}{ReadOnly}; control socket {Control}", store,
                string.Concat(s.Snapshots.Select(v => ", " + v.Name)), readOnly ? " (read-only)" : "", control.Path);
            foreach (var address in server.Addresses) console.Out.WriteLine($"listening on {address}");
            console.Out.Flush();

            // Why we wait: serving until SIGINT or SIGTERM.
            string signal = await stop.Task.ConfigureAwait(false);
            log.LogInformation("{Signal}: stopping", signal);
        }
        finally
        {
            // Stop order: no more commands, no more connections; requests in flight finish; the store is flushed and
            // closed cleanly (everything written home, the log marked clean).
            // Each step runs even if the one before failed (a failed final flush must not leave the store open).
            try
            {
                try
                {
                    if (control is not null) await control.DisposeAsync().ConfigureAwait(false);
                }
                finally
                {
                    if (server is not null) await server.DisposeAsync().ConfigureAwait(false);
                }
            }
            finally
            {
                await s.CloseAsync().ConfigureAwait(false);
            }
        }
        log.LogInformation("store {Store} closed cleanly", store);
        return ExitCodes.Success;
    }
}
