using System.Globalization;
using Journal;
using Journal.Format;
using Journal.Recovery;
using Snapshot.Exceptions;
using Snapshot.Format;
using Snapshot.Metadata;

namespace Snapshot.Recovery;

/// <summary>
/// The store's own decoders of what it logs: the superblock item (type <c>0x5342</c>, id 0, one region: the
/// superblock's header and snapshot records) and the metadata-segment item (type <c>0x534e</c>, id = snapshot id
/// &lt;&lt; 40 | segment, one region: a 16-byte header and the entries appended since the segment was last home).
/// The store's recovery validates every logged item with them before it applies anything (case 3 of
/// <see cref="StoreRecovery"/>), and <c>jreplay</c> names, describes and validates items with the same code, so both
/// refuse the same logs with the same line.
/// </summary>
internal static class StoreLogItems
{
    /// <summary>The item type of a metadata segment of a snapshot's COW file ("SN").</summary>
    public const ushort SegmentType = AreaSegmentItem.Type;

    /// <summary>The item type of the store superblock ("SB").</summary>
    public const ushort SuperblockType = SuperblockItem.Type;

    private static readonly Dictionary<ushort, string> Names = new() { [SegmentType] = "cow-segment", [SuperblockType] = "superblock" };

    /// <summary>The name of a store item type (<c>cow-segment</c>, <c>superblock</c>), or <c>type N</c>.</summary>
    public static string TypeName(ushort type) => Names.TryGetValue(type, out var n) ? n : string.Create(CultureInfo.InvariantCulture, $"type {type}");

    /// <summary>The names of the store's item types.</summary>
    public static IEnumerable<string> TypeNames => Names.Values;

    /// <summary>Parses an item type given as a number (0-65535) or a store type name.</summary>
    public static bool TryParseType(string text, out ushort type)
    {
        if (ushort.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out type)) return true;
        foreach (var (k, v) in Names)
            if (string.Equals(v, text, StringComparison.OrdinalIgnoreCase)) { type = k; return true; }
        return false;
    }

    /// <summary>
    /// What a store item says: "snapshot snap-1 (id 1) segment 17: entries 28..31" or "generation 7: 3 snapshots
    /// (a, b, c)"; why it does not decode; or null for a type the store does not log. Snapshot ids are named when
    /// <paramref name="snapshotNames"/> knows them.
    /// </summary>
    public static string? Describe(CheckpointItem item, IReadOnlyDictionary<ulong, string>? snapshotNames = null)
    {
        ArgumentNullException.ThrowIfNull(item);
        if (item.ItemType == SuperblockType)
        {
            if (item.Regions.Count != 1) return $"not a superblock: {item.Regions.Count} regions, expected 1";
            var sb = ParseLoggedSuperblock(item.Regions[0].Span, out string? problem);
            if (sb is null) return $"not a superblock: {problem}";
            string names = sb.Snapshots.Count == 0 ? "" : " (" + string.Join(", ", sb.Snapshots.Select(r => r.Name)) + ")";
            return string.Create(CultureInfo.InvariantCulture,
                $"generation {sb.Generation}: {sb.Snapshots.Count} snapshot{(sb.Snapshots.Count == 1 ? "" : "s")}{names}");
        }
        if (item.ItemType != SegmentType) return null;
        var (snapshot, segment) = AreaSegmentItem.SplitId(item.ItemId);
        string who = snapshotNames is not null && snapshotNames.TryGetValue(snapshot, out var name)
            ? $"snapshot {name} (id {snapshot})"
            : $"snapshot id {snapshot}";
        var s = string.Create(CultureInfo.InvariantCulture, $"{who} segment {segment}");
        if (item.Regions.Count != 1) return s + string.Create(CultureInfo.InvariantCulture, $": {item.Regions.Count} regions, expected 1");
        var h = SegmentLogHeader.TryRead(item.Regions[0].Span, MaxSegmentEntries, out string? bad);
        if (h is null) return s + ": " + bad;
        return s + (h.Value.Count == 0 ? ": no entries" : string.Create(CultureInfo.InvariantCulture, $": entries {h.Value.First}..{h.Value.First + h.Value.Count - 1}"));
    }

    /// <summary>
    /// Validates every item of <paramref name="log"/> that is of a store type with the store's decoders (for a bare
    /// log, whose store is unknown: items of other types pass, and the geometry is not compared).
    /// </summary>
    /// <exception cref="CorruptionException">A store item does not decode (names the log, block, LSN and problem).</exception>
    public static void Validate(RecoveredLog log)
    {
        ArgumentNullException.ThrowIfNull(log);
        Validate(log, home: null);
    }

    /// <summary>
    /// Validates every item of <paramref name="log"/> as the store in <paramref name="storeFolder"/> does before it
    /// applies anything (<see cref="StoreRecovery"/> cases 3 and 6): only store item types, each decoding, superblocks
    /// of the geometry <c>store.sb</c> holds, and every segment of a snapshot the log's newest superblock lists inside
    /// that snapshot's COW size. Reads the log's items and <c>store.sb</c> only (not the COW files).
    /// </summary>
    /// <exception cref="CorruptionException">A store item does not decode, or a segment lies beyond its COW size.</exception>
    /// <exception cref="JournalException">An item type the store does not log; <c>store.sb</c> unreadable.</exception>
    public static void ValidateForStore(RecoveredLog log, string storeFolder)
    {
        ArgumentNullException.ThrowIfNull(log);
        ArgumentNullException.ThrowIfNull(storeFolder);
        using var sbDev = Journal.Storage.FileBlockDevice.Open(Path.Combine(storeFolder, SnapshotStore.SuperblockFileName), readOnly: true);
        var home = Superblock.Read(sbDev);
        Validate(log, home);
        // The superblock the replay would end on (case 5): the newest logged copy above the home's LSN.
        var replayed = home;
        var homeLsn = Lsn.FromValue(home.HomeLsn);
        foreach (var c in log.Checkpoints)
            foreach (var item in c.Items)
                if (item.ItemType == SuperblockType && c.StartLsn > homeLsn)
                    replayed = DecodeSuperblock(log.Name, c.StartLsn, c.Sequence, item.ItemId, item.Regions, home);
        StoreRecovery.CheckSegmentBounds(log, StoreRecovery.Listed(replayed), new CowLayout(home.ChunkSectors));
    }

    /// <summary>
    /// Snapshot names by id from the newest good copy of the store's <c>store.sb</c>, to label items; null when it
    /// cannot be read (labels then show ids only).
    /// </summary>
    public static IReadOnlyDictionary<ulong, string>? SnapshotNames(string storeFolder)
    {
        try
        {
            using var sb = Journal.Storage.FileBlockDevice.Open(Path.Combine(storeFolder, SnapshotStore.SuperblockFileName), readOnly: true);
            var names = new Dictionary<ulong, string>();
            foreach (var r in Superblock.Read(sb).Snapshots) names[r.Id] = r.Name;
            return names;
        }
        catch (Exception e) when (e is JournalException or IOException)
        {
            return null;
        }
    }

    /// <summary>Most entries a segment can have (with chunks of 4 KiB or more).</summary>
    private const int MaxSegmentEntries = 256;

    /// <summary>
    /// Case 3 of <see cref="StoreRecovery"/>. With <paramref name="home"/> (a store): every item must be of a store
    /// type, superblocks must keep the home geometry and segments are checked against it. Without (a bare log): only
    /// items of store types are decoded.
    /// </summary>
    internal static void Validate(RecoveredLog log, Superblock? home)
    {
        if (home is not null) JournalRecovery.RequireHandlers(log, Names.Keys);
        CowLayout? layout = home is null ? null : new CowLayout(home.ChunkSectors);
        int segmentEntries = layout is { } l ? PersistentExceptionStore.SegmentEntriesFor(l) : MaxSegmentEntries;
        long originChunks = home is null ? long.MaxValue : home.OriginSectors / home.ChunkSectors;
        foreach (var c in log.Checkpoints)
            foreach (var item in c.Items)
            {
                if (item.ItemType == SuperblockType) DecodeSuperblock(log.Name, c.StartLsn, c.Sequence, item.ItemId, item.Regions, home);
                else if (item.ItemType == SegmentType) DecodeSegment(log.Name, c.StartLsn, c.Sequence, item.ItemId, item.Regions, layout, segmentEntries, originChunks);
            }
    }

    /// <summary>A logged superblock copy, decoded and checked; the geometry must equal <paramref name="home"/>'s when given.</summary>
    internal static Superblock DecodeSuperblock(string logName, Lsn start, ulong sequence, ulong itemId, IReadOnlyList<ReadOnlyMemory<byte>> regions,
        Superblock? home)
    {
        CorruptionException Bad(string problem, string? expected = null, string? actual = null) =>
            new(logName, start.Block, start, string.Create(CultureInfo.InvariantCulture, $"checkpoint {sequence}: superblock item: {problem}"), expected, actual);
        if (itemId != SuperblockItem.Id) throw Bad("wrong item id", SuperblockItem.Id.ToString(CultureInfo.InvariantCulture), itemId.ToString(CultureInfo.InvariantCulture));
        if (regions.Count != 1) throw Bad("wrong number of regions", "1", regions.Count.ToString(CultureInfo.InvariantCulture));
        var sb = ParseLoggedSuperblock(regions[0].Span, out string? problem) ?? throw Bad(problem!);
        if (home is not null && (sb.OriginSectors != home.OriginSectors || sb.ChunkSectors != home.ChunkSectors))
            throw Bad("logged superblock changes the store's geometry",
                $"origin {home.OriginSectors} sectors, chunk {home.ChunkSectors} sectors (store.sb)",
                $"origin {sb.OriginSectors} sectors, chunk {sb.ChunkSectors} sectors");
        return sb;
    }

    /// <summary>A logged segment copy, decoded and checked: its header, and every entry when the geometry is known.</summary>
    internal static (ulong SnapshotId, long Segment, SegmentLogHeader Header) DecodeSegment(string logName, Lsn start, ulong sequence, ulong itemId,
        IReadOnlyList<ReadOnlyMemory<byte>> regions, CowLayout? layout, int segmentEntries, long originChunks)
    {
        var (id, segment) = AreaSegmentItem.SplitId(itemId);
        CorruptionException Bad(string problem, string? expected = null, string? actual = null) =>
            new(logName, start.Block, start, string.Create(CultureInfo.InvariantCulture,
                $"checkpoint {sequence}: metadata segment {segment} of snapshot id {id}: {problem}"), expected, actual);
        if (regions.Count != 1) throw Bad("wrong number of regions", "1", regions.Count.ToString(CultureInfo.InvariantCulture));
        var region = regions[0].Span;
        var h = SegmentLogHeader.TryRead(region, segmentEntries, out string? problem) ?? throw Bad(problem!);
        if (layout is { } l)
        {
            for (int i = 0; i < h.Count; i++)
            {
                var e = DiskException.Read(region.Slice(SegmentLogHeader.Size + i * DiskException.Size));
                long index = h.First + i;
                if (e.NewChunk == 0 || l.IsMetadataChunk(e.NewChunk))
                    throw Bad(string.Create(CultureInfo.InvariantCulture, $"entry {index}: new_chunk is not a data chunk"), "a data chunk", e.NewChunk.ToString(CultureInfo.InvariantCulture));
                if (e.OldChunk >= (ulong)originChunks)
                    throw Bad(string.Create(CultureInfo.InvariantCulture, $"entry {index}: old_chunk is beyond the origin"),
                        string.Create(CultureInfo.InvariantCulture, $"below {originChunks}"), e.OldChunk.ToString(CultureInfo.InvariantCulture));
            }
        }
        return (id, segment, h);
    }

    /// <summary>Parses a logged superblock; a malformed snapshot record is a problem like any other, not an exception.</summary>
    private static Superblock? ParseLoggedSuperblock(ReadOnlySpan<byte> logged, out string? problem)
    {
        try
        {
            return Superblock.TryParseLogged(logged, SnapshotStore.SuperblockFileName, out problem);
        }
        catch (JournalException e)
        {
            problem = e.Message;
            return null;
        }
    }
}
