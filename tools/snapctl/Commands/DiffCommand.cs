using System.CommandLine;
using System.Globalization;
using Journal.Tools;
using Snapshot;
using Snapshot.Changes;

namespace SnapCtl.Commands;

/// <summary>
/// <c>snapctl diff &lt;store&gt; &lt;from&gt; [&lt;to&gt;] [--json]</c>: the extents where snapshot <c>from</c> differs from the
/// newer snapshot <c>to</c>, or from the origin (no <c>to</c>, or <c>origin</c>), adjacent chunks merged, with totals.
/// Offline it opens the store; on a served store it asks the serving process (same output, same exit codes).
/// </summary>
/// <remarks>
/// Text: one line per extent, <c>&lt;offset&gt; &lt;length&gt;</c> in bytes, then one line of totals starting with
/// <c>total:</c>. JSON: <c>store</c>, <c>from</c>, <c>to</c>, <c>chunk_bytes</c>, <c>volume_bytes</c>,
/// <c>extents[]</c> (<c>offset</c>, <c>length</c>), <c>extent_count</c>, <c>chunks</c>, <c>bytes</c>,
/// <c>from_written</c>, <c>to_written</c>, <c>cost</c> (<c>exceptions_considered</c>, <c>metadata_entries_read</c>,
/// <c>chunks_compared</c>, <c>bytes_compared</c>). Exit 0; 66 for a missing store or snapshot; 64 when <c>from</c> is
/// newer than <c>to</c>; 2 when a snapshot is invalid or being merged, or its metadata does not read back.
/// </remarks>
internal static class DiffCommand
{
    public static Command Create(ToolConsole console)
    {
        var store = CommonOptions.Path("store", "The store folder.");
        var from = CommonOptions.Name("from", "The older snapshot.");
        var to = new Argument<string?>("to")
        {
            Description = "A newer snapshot, or 'origin' (the default): the origin's current contents.",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var json = CommonOptions.Json();
        var command = new Command("diff",
            "List the extents where a snapshot differs from a newer snapshot or from the origin (changed-block tracking), " +
            "adjacent chunks merged, with totals. Derived from the snapshots' exception metadata: it survives every crash the store survives.")
        {
            store, from, to, json,
        };
        command.SetAction(r => RunAsync(console, r.GetValue(store)!, r.GetValue(from)!, r.GetValue(to), r.GetValue(json)));
        return command;
    }

    private static async Task<int> RunAsync(ToolConsole console, string store, string from, string? to, bool json)
    {
        if (to == "origin") to = null;
        StoreCommands.RequireName(from);
        if (to is not null) StoreCommands.RequireName(to);
        if (await StoreCommands.Served(console, store, new Control.ControlRequest("diff", store, from, To: to, Json: json)).ConfigureAwait(false) is { } served)
            return served;
        await using var s = await StoreCommands.OpenAsync(console, store, readOnly: true).ConfigureAwait(false);
        var map = await ComputeAsync(s, store, from, to, console.Cancellation).ConfigureAwait(false);
        await s.CloseAsync().ConfigureAwait(false);
        Print(console, store, map, json);
        return ExitCodes.Success;
    }

    /// <summary>The map, after the same checks offline and live (a missing snapshot is a missing input, exit 66).</summary>
    public static ValueTask<ChangedExtents> ComputeAsync(SnapshotStore s, string store, string from, string? to, CancellationToken cancellationToken)
    {
        StoreCommands.RequireSnapshot(s, store, from);
        if (to is not null) StoreCommands.RequireSnapshot(s, store, to);
        return s.GetChangedExtentsAsync(from, to, cancellationToken);
    }

    /// <summary>Prints <paramref name="map"/> as text or JSON (the same offline and through the control socket).</summary>
    public static void Print(ToolConsole console, string store, ChangedExtents map, bool json)
    {
        long chunkBytes = map.ChunkSectors * 512L;
        long volumeBytes = map.VolumeSectors * 512L;
        if (json)
        {
            JsonOutput.Write(console.Out, new DiffReport(store, map.From, map.To, chunkBytes, volumeBytes,
                map.Extents.Select(e => new DiffReport.Extent(e.Offset, e.Length)).ToArray(), map.Extents.Count, map.Chunks, map.Bytes,
                map.FromWritten, map.ToWritten,
                new DiffReport.CostInfo(map.Cost.ExceptionsConsidered, map.Cost.MetadataEntriesRead, map.Cost.ChunksCompared, map.Cost.BytesCompared)));
            return;
        }
        var w = console.Out;
        foreach (var e in map.Extents) w.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{e.Offset} {e.Length}"));
        double percent = volumeBytes == 0 ? 0 : 100.0 * map.Bytes / volumeBytes;
        w.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"total: {map.Extents.Count} extents, {map.Chunks} chunks of {chunkBytes} bytes, {map.Bytes} bytes ({percent:0.##}% of {volumeBytes}) changed from {map.From} to {map.To}"));
        if (map.Cost.ChunksCompared > 0)
            w.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"total: {map.Cost.ChunksCompared} chunks held by both were compared by content ({map.Cost.BytesCompared} bytes read): {(map.FromWritten || map.ToWritten ? $"{(map.FromWritten ? map.From : map.To)} was written by a user" : $"{map.To} has no creation mark for {map.From}")}"));
        w.Flush();
    }

    /// <summary>The JSON form.</summary>
    internal sealed record DiffReport(string Store, string From, string To, long ChunkBytes, long VolumeBytes, IReadOnlyList<DiffReport.Extent> Extents,
        int ExtentCount, long Chunks, long Bytes, bool FromWritten, bool ToWritten, DiffReport.CostInfo Cost)
    {
        public sealed record Extent(long Offset, long Length);
        public sealed record CostInfo(long ExceptionsConsidered, long MetadataEntriesRead, long ChunksCompared, long BytesCompared);
    }
}
