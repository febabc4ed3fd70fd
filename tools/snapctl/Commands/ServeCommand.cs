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
/// <c>snapctl serve &lt;store&gt; (--socket &lt;path&gt; | --listen &lt;host:port&gt;) [--read-only] [--max-connections &lt;n&gt;]</c>:
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
        var command = new Command("serve",
            "Serve the origin and every snapshot as NBD exports (origin, or the empty name, and each snapshot's name) until SIGINT/SIGTERM. " +
            "While it runs, 'snapshot create|delete|merge' and 'status' on the store go to this process.")
        {
            store, socket, listen, readOnly, maxConnections, deferWrites,
        };
        command.SetAction(r => RunAsync(console, r.GetValue(store)!, r.GetValue(socket), r.GetValue(listen), r.GetValue(readOnly), r.GetValue(maxConnections),
            r.GetValue(deferWrites)));
        return command;
    }

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

    private static async Task<int> RunAsync(ToolConsole console, string store, string? socketPath, string? listen, bool readOnly, int maxConnections,
        bool deferWrites = false)
    {
        if (OperatingSystem.IsWindows()) throw new ToolException(ExitCodes.Failure, "serve needs Unix sockets and signals (Linux)");
        if (socketPath is null && listen is null) throw new UsageException("serve: give --socket <path> or --listen <host:port> (or both)");
        if (maxConnections < 1) throw new UsageException($"--max-connections: {maxConnections} must be at least 1");
        var tcp = listen is null ? [] : new[] { ParseListen(listen) };
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
            server = await NbdServer.StartAsync(s, new NbdServerOptions
            {
                UnixSockets = socketPath is null ? [] : [socketPath],
                TcpEndpoints = tcp,
                ReadOnly = readOnly,
                MaxConnections = maxConnections,
                LoggerFactory = loggerFactory,
            }).ConfigureAwait(false);
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
