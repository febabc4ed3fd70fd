using System.Globalization;
using Journal.Storage;
using Journal.Tools;
using Snapshot;

namespace SnapCtl;

/// <summary>
/// The bodies of the store commands: each opens the store (which replays its journal first if the last close was
/// not clean), does one thing, and closes it cleanly, so the store is consistent on disk between commands.
/// </summary>
internal static class StoreCommands
{
    private const int Sector = BlockDevice.SectorSize;
    private const int IoBytes = 1 << 20;

    /// <summary>The log size <c>init</c> picks when none is given: 1/32 of the origin, from 2 MiB to 128 MiB.</summary>
    public static long DefaultLogBytes(long originBytes) => Math.Clamp(originBytes / 32, 2L << 20, 128L << 20) / Sector * Sector;

    public static async Task<int> InitAsync(ToolConsole console, string store, long originSize, long chunkSize, long? logSize)
    {
        RequireSectors("--origin-size", originSize);
        RequireSectors("--chunk-size", chunkSize);
        long logBytes = logSize ?? DefaultLogBytes(originSize);
        RequireSectors("--log-size", logBytes);
        if (File.Exists(store)) throw new ToolException(ExitCodes.Failure, $"{store}: exists and is a file, not a folder");
        if (chunkSize / Sector > StoreOptions.MaxChunkSectors || !long.IsPow2(chunkSize / Sector))
            throw new UsageException($"--chunk-size: {Sizes.Format(chunkSize)} is not a power of two from 512 bytes to {Sizes.Format((long)StoreOptions.MaxChunkSectors * Sector)}");
        if (logBytes / Sector > uint.MaxValue) throw new UsageException($"--log-size: {Sizes.Format(logBytes)} is too large");

        var options = new StoreOptions
        {
            OriginSectors = originSize / Sector,
            ChunkSectors = (int)(chunkSize / Sector),
            LogBlocks = (uint)(logBytes / Sector),
        };
        var s = await SnapshotStore.CreateAsync(store, options, console.Cancellation).ConfigureAwait(false);
        await s.CloseAsync().ConfigureAwait(false);
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"created store {store}: origin {Sizes.Format(originSize)} ({options.OriginSectors} sectors), chunk {Sizes.Format(chunkSize)} ({options.ChunkSectors} sectors), log {Sizes.Format(logBytes)} ({options.LogBlocks} blocks)"));
        return ExitCodes.Success;
    }

    public static async Task<int> CreateSnapshotAsync(ToolConsole console, string store, string name, long? cowSize, bool transient, bool preallocate = false)
    {
        if (cowSize is { } c) RequireSectors("--cow-size", c);
        if (await Served(console, store, new("snapshot-create", store, name, cowSize, transient, Preallocate: preallocate)) is { } served) return served;
        await using var s = await OpenAsync(console, store).ConfigureAwait(false);
        var options = new SnapshotOptions { Persistent = !transient, CowSectors = cowSize / Sector, Preallocate = preallocate };
        await s.CreateSnapshotAsync(name, options, console.Cancellation).ConfigureAwait(false);
        var status = s.GetStatus().Snapshots.Single(x => x.Name == name);
        await s.CloseAsync().ConfigureAwait(false);
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"created snapshot {name}: {(transient ? "transient" : "persistent")}, COW {Sizes.Friendly(status.TotalSectors * Sector)} ({status.TotalSectors} sectors){(preallocate ? ", preallocated" : "")}"));
        if (transient)
            console.Error.WriteLine($"{console.Name}: note: a transient snapshot keeps its contents only while the store stays open; from now on '{name}' reports Invalid");
        return ExitCodes.Success;
    }

    public static async Task<int> DeleteSnapshotAsync(ToolConsole console, string store, string name, bool force = false)
    {
        RequireName(name);
        if (await Served(console, store, new("snapshot-delete", store, name, Force: force)) is { } served) return served;
        await using var s = await OpenAsync(console, store).ConfigureAwait(false);
        RequireSnapshot(s, store, name);
        await s.DeleteSnapshotAsync(name, console.Cancellation).ConfigureAwait(false);
        await s.CloseAsync().ConfigureAwait(false);
        console.Out.WriteLine($"deleted snapshot {name}");
        return ExitCodes.Success;
    }

    public static async Task<int> MergeSnapshotAsync(ToolConsole console, string store, string name, bool force = false)
    {
        RequireName(name);
        if (await Served(console, store, new("snapshot-merge", store, name, Force: force)) is { } served) return served;
        await using var s = await OpenAsync(console, store).ConfigureAwait(false);
        RequireSnapshot(s, store, name);
        long chunks = s.GetStatus().Snapshots.Single(x => x.Name == name).Exceptions;
        await ProgressBar.RunAsync(console, $"merging {name}", chunks, async p =>
        {
            await s.MergeSnapshotAsync(name, new Progress<(long Done, long Total)>(d => p.Report(d.Done)), console.Cancellation).ConfigureAwait(false);
            return 0;
        }).ConfigureAwait(false);
        await s.CloseAsync().ConfigureAwait(false);
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"merged snapshot {name} into the origin: {chunks} chunks copied home, snapshot deleted"));
        return ExitCodes.Success;
    }

    public static async Task<int> WriteAsync(ToolConsole console, string store, string? snapshot, long offset, int? pattern, long length, string? input)
    {
        if (snapshot is not null) RequireName(snapshot);
        RequireSectors("--offset", offset);
        if (input is not null)
        {
            InputPaths.RequireFile(input);
            length = new FileInfo(input).Length;
            if (length % Sector != 0)
                throw new UsageException($"--input: {input} is {length} bytes, not a whole number of {Sector}-byte sectors");
        }
        else
        {
            RequireSectors("--length", length);
        }
        if (length == 0) throw new UsageException(input is null ? "--length: nothing to write (0 bytes)" : $"--input: {input} is empty");

        await using var s = await OpenAsync(console, store).ConfigureAwait(false);
        var volume = snapshot is null ? s.Origin : RequireSnapshot(s, store, snapshot);
        RequireInside(volume, offset, length);

        await using var source = input is null ? null : new FileStream(input, FileMode.Open, FileAccess.Read, FileShare.Read, IoBytes, FileOptions.SequentialScan);
        var buffer = new byte[(int)Math.Min(IoBytes, length)];
        if (pattern is { } p) buffer.AsSpan().Fill((byte)p);
        for (long done = 0; done < length;)
        {
            int n = (int)Math.Min(buffer.Length, length - done);
            // A signal stops the write between pieces: what was written stays, the store closes cleanly.
            console.Cancellation.ThrowIfCancellationRequested();
            if (source is not null) await source.ReadExactlyAsync(buffer.AsMemory(0, n), console.Cancellation).ConfigureAwait(false);
            await volume.WriteAsync((offset + done) / Sector, buffer.AsMemory(0, n), console.Cancellation).ConfigureAwait(false);
            done += n;
        }
        await s.FlushAsync(console.Cancellation).ConfigureAwait(false);
        await s.CloseAsync().ConfigureAwait(false);
        console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {length} bytes at offset {offset} to {volume.Name} (durable)"));
        return ExitCodes.Success;
    }

    public static async Task<int> ReadAsync(ToolConsole console, string store, string? snapshot, long offset, long length, string? output)
    {
        if (snapshot is not null) RequireName(snapshot);
        RequireSectors("--offset", offset);
        RequireSectors("--length", length);
        await using var s = await OpenAsync(console, store, readOnly: true).ConfigureAwait(false);
        var volume = snapshot is null ? s.Origin : RequireSnapshot(s, store, snapshot);
        RequireInside(volume, offset, length);

        if (output is not null && s.IsStorePath(output))
            throw new UsageException($"--output: {output} is one of the store's own files (or in its folder); write the data elsewhere");
        Stream destination;
        try
        {
            destination = output is null ? console.OpenRawOutput() : new FileStream(output, FileMode.Create, FileAccess.Write, FileShare.Read, IoBytes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ToolException(ExitCodes.Failure, $"{output}: cannot be written: {ErrorMap.OneLine(e.Message)}", e);
        }
        try
        {
            var buffer = new byte[(int)Math.Min(IoBytes, Math.Max(length, Sector))];
            for (long done = 0; done < length;)
            {
                int n = (int)Math.Min(buffer.Length, length - done);
                console.Cancellation.ThrowIfCancellationRequested();
                await volume.ReadAsync((offset + done) / Sector, buffer.AsMemory(0, n), console.Cancellation).ConfigureAwait(false);
                await destination.WriteAsync(buffer.AsMemory(0, n)).ConfigureAwait(false);
                done += n;
            }
            await destination.FlushAsync().ConfigureAwait(false);
        }
        finally
        {
            if (output is not null) await destination.DisposeAsync().ConfigureAwait(false);
        }
        await s.CloseAsync().ConfigureAwait(false);
        return ExitCodes.Success;
    }

    public static async Task<int> StatusAsync(ToolConsole console, string store, bool json)
    {
        if (await Served(console, store, new("status", store, Json: json)) is { } served) return served;
        await using var s = await OpenAsync(console, store, readOnly: true).ConfigureAwait(false);
        var status = s.GetStatus();
        await s.CloseAsync().ConfigureAwait(false);
        if (json)
        {
            JsonOutput.Write(console.Out, StatusReport.From(status));
            return ExitCodes.Success;
        }
        foreach (var line in StatusReport.Lines(status)) console.Out.WriteLine(line);
        return ExitCodes.Success;
    }

    /// <summary>
    /// When <c>snapctl serve</c> holds the store, runs the command in the serving process through the store's control
    /// socket and returns its exit code (its output printed); null when no server holds the store.
    /// </summary>
    internal static Task<int?> Served(ToolConsole console, string store, Control.ControlRequest request)
    {
        RequireStore(store);
        return Control.ControlClient.TryForwardAsync(console, store, request);
    }

    /// <summary>
    /// Opens the store after checking the folder; says on stderr when the journal had to be replayed.
    /// </summary>
    /// <param name="console">Where the notes go.</param>
    /// <param name="store">The store folder.</param>
    /// <param name="readOnly">
    /// For commands that only read (status, read, diff): open the store read-only, so that looking at a store changes
    /// nothing in it, on a read-only file system too (shared lock; a journal that needs replay is replayed in memory
    /// only, and stderr says so).
    /// </param>
    /// <param name="loggerFactory">Where the store and its journal log (null: nowhere).</param>
    /// <param name="deferCopiedWrites">Open with <see cref="StoreOptions.DeferCopiedWrites"/>.</param>
    public static async Task<SnapshotStore> OpenAsync(ToolConsole console, string store, bool readOnly = false,
        Microsoft.Extensions.Logging.ILoggerFactory? loggerFactory = null, bool deferCopiedWrites = false)
    {
        RequireStore(store);
        SnapshotStore s;
        if (readOnly)
        {
            s = await SnapshotStore.OpenAsync(store, new StoreOptions { ReadOnly = true, LoggerFactory = loggerFactory }, console.Cancellation).ConfigureAwait(false);
            if (!s.LogClean)
                console.Error.WriteLine($"{console.Name}: {store}: the last close was not clean; the journal was replayed in memory only " +
                    "(the store is unchanged: the next command that writes, or jreplay replay, replays it on disk)");
            return s;
        }
        s = await SnapshotStore.OpenAsync(store, new StoreOptions { LoggerFactory = loggerFactory, DeferCopiedWrites = deferCopiedWrites }, console.Cancellation).ConfigureAwait(false);
        if (!s.LogClean)
            console.Error.WriteLine($"{console.Name}: {store}: the last close was not clean; the journal was replayed");
        return s;
    }

    /// <summary>The store folder must exist, be a folder, and hold a store superblock; its own files must be regular files.</summary>
    public static void RequireStore(string store)
    {
        InputPaths.RequireDirectory(store, "a snapshot store folder");
        string sb = Path.Combine(store, SnapshotStore.SuperblockFileName);
        if (!File.Exists(sb)) throw new InputException($"{store}: not a snapshot store (no {SnapshotStore.SuperblockFileName})");
        InputPaths.RequireReadable(sb);
        // The store's other files too: each is refused if it is not a regular file, before the store opens it.
        InputPaths.RequireRegular(Path.Combine(store, SnapshotStore.JournalFileName));
        InputPaths.RequireRegular(Path.Combine(store, SnapshotStore.OriginFileName));
    }

    /// <summary>
    /// A snapshot name given on the command line must be one a create would take: anything else (a path separator, a
    /// character outside the set) is a usage error (exit 64) found before the store opens, not a snapshot that is missing.
    /// </summary>
    internal static void RequireName(string name)
    {
        if (Snapshot.Format.SnapshotRecord.NameProblem(name) is { } problem) throw new UsageException(problem);
    }

    /// <summary>The snapshot named <paramref name="name"/>; a missing one is a missing input (exit 66).</summary>
    internal static StoreVolume RequireSnapshot(SnapshotStore s, string store, string name) =>
        s.Snapshots.FirstOrDefault(v => v.Name == name) ?? throw new InputException($"{store}: no snapshot named '{name}'");

    private static void RequireSectors(string option, long bytes)
    {
        if (bytes % Sector != 0)
            throw new UsageException($"{option}: {bytes} bytes is not a whole number of {Sector}-byte sectors");
    }

    private static void RequireInside(StoreVolume volume, long offset, long length)
    {
        long size = volume.SectorCount * Sector;
        if (offset < 0 || length < 0 || length > size || offset > size - length) // no overflow: offset + length is never formed
            throw new UsageException(string.Create(CultureInfo.InvariantCulture,
                $"{length} bytes at offset {offset} go past the end of {volume.Name} ({size} bytes)"));
    }
}
