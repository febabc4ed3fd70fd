using System.Globalization;
using Journal.Storage;
using Journal.Tools;
using Snapshot;
using Snapshot.Nbd;

namespace SnapCtl.Control;

/// <summary>
/// The store commands as the serving process runs them for the control socket: the same checks, output lines and exit
/// codes as the offline commands in <see cref="StoreCommands"/>, on the store the server holds (snapshot changes go
/// through the <see cref="NbdServer"/>, which keeps them consistent with the clients' I/O).
/// </summary>
internal static class LiveCommands
{
    private const int Sector = BlockDevice.SectorSize;

    /// <summary>Runs <paramref name="request"/>; returns what it printed and its exit code.</summary>
    public static async Task<ControlResponse> RunAsync(NbdServer server, ControlRequest request)
    {
        var stdout = new StringWriter(CultureInfo.InvariantCulture);
        var stderr = new StringWriter(CultureInfo.InvariantCulture);
        var console = ToolConsole.ForWriters("snapctl", stdout, stderr, Stream.Null);
        int exit;
        try
        {
            exit = request.Command switch
            {
                "snapshot-create" => await CreateAsync(console, server, request).ConfigureAwait(false),
                "snapshot-delete" => await DeleteAsync(console, server, request).ConfigureAwait(false),
                "snapshot-merge" => await MergeAsync(console, server, request).ConfigureAwait(false),
                "status" => Status(console, server, request),
                "diff" => await DiffAsync(console, server, request).ConfigureAwait(false),
                _ => throw new UsageException($"control socket: unknown command '{request.Command}'"),
            };
        }
        catch (Exception e)
        {
            var (code, message, _) = ErrorMap.Map(e);
            if (e is NbdExportInUseException) message += "; --force disconnects them";
            stderr.WriteLine($"snapctl: {message}");
            exit = code;
        }
        return new ControlResponse(exit, stdout.ToString(), stderr.ToString());
    }

    private static async Task<int> CreateAsync(ToolConsole console, NbdServer server, ControlRequest r)
    {
        string name = r.Name ?? throw new UsageException("snapshot create: no name");
        if (r.CowBytes is { } c && c % Sector != 0) throw new UsageException($"--cow-size: {c} bytes is not a whole number of {Sector}-byte sectors");
        var options = new SnapshotOptions { Persistent = !r.Transient, CowSectors = r.CowBytes / Sector, Preallocate = r.Preallocate };
        await server.CreateSnapshotAsync(name, options).ConfigureAwait(false);
        var status = server.Store.GetStatus().Snapshots.Single(x => x.Name == name);
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"created snapshot {name}: {(r.Transient ? "transient" : "persistent")}, COW {Sizes.Friendly(status.TotalSectors * Sector)} ({status.TotalSectors} sectors){(r.Preallocate ? ", preallocated" : "")}"));
        if (r.Transient)
            console.Error.WriteLine($"{console.Name}: note: a transient snapshot keeps its contents only while the store stays open; once the server stops, '{name}' reports Invalid");
        return ExitCodes.Success;
    }

    private static async Task<int> DeleteAsync(ToolConsole console, NbdServer server, ControlRequest r)
    {
        string name = RequireSnapshot(server, r);
        await server.DeleteSnapshotAsync(name, r.Force).ConfigureAwait(false);
        console.Out.WriteLine($"deleted snapshot {name}");
        return ExitCodes.Success;
    }

    private static async Task<int> MergeAsync(ToolConsole console, NbdServer server, ControlRequest r)
    {
        string name = RequireSnapshot(server, r);
        long chunks = server.Store.GetStatus().Snapshots.Single(x => x.Name == name).Exceptions;
        await server.MergeSnapshotAsync(name, r.Force).ConfigureAwait(false);
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"merged snapshot {name} into the origin: {chunks} chunks copied home, snapshot deleted"));
        return ExitCodes.Success;
    }

    private static int Status(ToolConsole console, NbdServer server, ControlRequest r)
    {
        var status = server.Store.GetStatus() with { Folder = r.Store };
        if (r.Json)
        {
            JsonOutput.Write(console.Out, StatusReport.From(status));
            return ExitCodes.Success;
        }
        foreach (var line in StatusReport.Lines(status)) console.Out.WriteLine(line);
        return ExitCodes.Success;
    }

    private static async Task<int> DiffAsync(ToolConsole console, NbdServer server, ControlRequest r)
    {
        string from = r.Name ?? throw new UsageException("diff: no snapshot name");
        var map = await Commands.DiffCommand.ComputeAsync(server.Store, r.Store, from, r.To, CancellationToken.None).ConfigureAwait(false);
        Commands.DiffCommand.Print(console, r.Store, map, r.Json);
        return ExitCodes.Success;
    }

    /// <summary>As offline: a missing snapshot is a missing input (exit 66) naming the store as the user typed it.</summary>
    private static string RequireSnapshot(NbdServer server, ControlRequest r)
    {
        string name = r.Name ?? throw new UsageException("no snapshot name");
        if (!server.Store.Snapshots.Any(v => v.Name == name)) throw new InputException($"{r.Store}: no snapshot named '{name}'");
        return name;
    }
}
