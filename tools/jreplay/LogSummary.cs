using System.Buffers.Binary;
using System.Globalization;
using Journal.Cil;
using Journal.Format;
using Journal.Recovery;
using Snapshot.Format;
using Snapshot.Metadata;

namespace JReplay;

/// <summary>One item copy inside a checkpoint.</summary>
/// <param name="Type">The item type number.</param>
/// <param name="TypeName">The item type's name, when the type is known.</param>
/// <param name="Id">The item id.</param>
/// <param name="Regions">Regions of the item.</param>
/// <param name="Bytes">Bytes of the item's regions.</param>
/// <param name="Detail">What the item's regions say, when the type is known ("snapshot 1 segment 0: entries 0..11").</param>
internal sealed record ItemInfo(ushort Type, string TypeName, ulong Id, int Regions, long Bytes, string? Detail);

/// <summary>One checkpoint: a complete log transaction of the journal.</summary>
internal sealed record CheckpointInfo(ulong Sequence, uint TransactionId, Lsn StartLsn, Lsn CommitLsn, long Bytes, IReadOnlyList<ItemInfo> Items);

/// <summary>
/// Decodes the complete log transactions recovery delivers as journal checkpoints (checkpoint header, then per item an
/// item header and the item's regions), checking each against its counts and magics without applying anything.
/// A transaction that does not decode is corruption, reported with the transaction's start LSN.
/// </summary>
internal static class Checkpoints
{
    public static CheckpointInfo Decode(string file, RecoveredTransaction t, IReadOnlyDictionary<ulong, string>? snapshotNames)
    {
        var regions = t.Regions;
        CorruptionException Corrupt(string problem, string? expected = null, string? actual = null) =>
            new(file, t.StartLsn.Block, t.StartLsn, problem, expected, actual);

        if (regions.Count == 0) throw Corrupt("log transaction has no regions, expected a checkpoint");
        var first = regions[0].Span;
        if (first.Length != CheckpointHeader.Size)
            throw Corrupt("checkpoint header has the wrong length", CheckpointHeader.Size.ToString(), first.Length.ToString());
        var h = CheckpointHeader.Read(first);
        if (h.Magic != CheckpointHeader.MagicValue)
            throw Corrupt("bad checkpoint magic", $"0x{CheckpointHeader.MagicValue:x8}", $"0x{h.Magic:x8}");
        if (h.RegionCount != regions.Count - 1)
            throw Corrupt($"checkpoint {h.Sequence} region count disagrees with the log", h.RegionCount.ToString(), (regions.Count - 1).ToString());

        var items = new List<ItemInfo>();
        int r = 1;
        while (r < regions.Count)
        {
            var ih = regions[r].Span;
            if (ih.Length < ItemHeader.FixedSize)
                throw Corrupt($"checkpoint {h.Sequence} item header at region {r} is too short", $">= {ItemHeader.FixedSize}", ih.Length.ToString());
            var item = ItemHeader.Read(ih);
            if (item.Magic != ItemHeader.MagicValue)
                throw Corrupt($"checkpoint {h.Sequence} region {r}: bad item magic", $"0x{ItemHeader.MagicValue:x8}", $"0x{item.Magic:x8}");
            if (r + 1 + item.RegionCount > regions.Count)
                throw Corrupt($"checkpoint {h.Sequence} item {item.ItemType}:{item.ItemId} has fewer regions than its header says",
                    item.RegionCount.ToString(), (regions.Count - r - 1).ToString());
            long bytes = 0;
            for (int k = 0; k < item.RegionCount; k++) bytes += regions[r + 1 + k].Length;
            string? detail = ItemTypes.Describe(item.ItemType, item.ItemId, item.RegionCount > 0 ? regions[r + 1].Span : default, snapshotNames);
            items.Add(new ItemInfo(item.ItemType, ItemTypes.Name(item.ItemType), item.ItemId, item.RegionCount, bytes, detail));
            r += 1 + item.RegionCount;
        }
        if (h.ItemCount != items.Count)
            throw Corrupt($"checkpoint {h.Sequence} item count disagrees with its regions", h.ItemCount.ToString(), items.Count.ToString());
        return new CheckpointInfo(h.Sequence, t.TransactionId, t.StartLsn, t.CommitLsn, t.PayloadBytes, items);
    }
}

/// <summary>
/// Names of the item types the project's journal users log (the numbers are the on-disk item type field), and how to
/// describe an item of a known type.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><c>0x534e</c> <c>cow-segment</c>: a segment of a snapshot's COW metadata area (see docs/snapshot.md). Item id =
/// snapshot id &lt;&lt; 40 | segment number. One region: a 16-byte header (magic "SnAr", first entry, entry count)
/// followed by the entries logged.</item>
/// <item><c>0x5342</c> <c>superblock</c>: the store superblock (geometry and snapshot list), id 0. One region: the
/// superblock's header and snapshot records.</item>
/// </list>
/// </remarks>
internal static class ItemTypes
{
    /// <summary>The snapshot store's COW metadata segment.</summary>
    public const ushort CowSegment = AreaSegmentItem.Type;

    /// <summary>The snapshot store's superblock.</summary>
    public const ushort StoreSuperblock = SuperblockItem.Type;

    private static readonly Dictionary<ushort, string> Names = new() { [CowSegment] = "cow-segment", [StoreSuperblock] = "superblock" };

    /// <summary>What an item says, for known types; null otherwise. Snapshot ids are named when <paramref name="snapshotNames"/> knows them.</summary>
    public static string? Describe(ushort type, ulong id, ReadOnlySpan<byte> firstRegion, IReadOnlyDictionary<ulong, string>? snapshotNames = null)
    {
        if (type == StoreSuperblock) return DescribeSuperblock(firstRegion);
        if (type != CowSegment) return null;
        ulong snapshot = id >> AreaSegmentItem.SegmentBits, segment = id & ((1UL << AreaSegmentItem.SegmentBits) - 1);
        string who = snapshotNames is not null && snapshotNames.TryGetValue(snapshot, out var name)
            ? $"snapshot {name} (id {snapshot})"
            : $"snapshot id {snapshot}";
        var s = string.Create(CultureInfo.InvariantCulture, $"{who} segment {segment}");
        if (firstRegion.Length >= SegmentLogHeader.Size && BinaryPrimitives.ReadUInt32LittleEndian(firstRegion) == SegmentLogHeader.Magic)
        {
            uint first = BinaryPrimitives.ReadUInt32LittleEndian(firstRegion[4..]);
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(firstRegion[8..]);
            s += count == 0 ? ": no entries" : string.Create(CultureInfo.InvariantCulture, $": entries {first}..{first + count - 1}");
        }
        return s;
    }

    /// <summary>"generation 7: 3 snapshots (snap-1, snap-2, scratch)", or why the logged copy does not parse.</summary>
    private static string DescribeSuperblock(ReadOnlySpan<byte> logged)
    {
        var sb = Superblock.TryParseLogged(logged, "superblock", out string? problem);
        if (sb is null) return $"not a superblock: {problem}";
        string names = sb.Snapshots.Count == 0 ? "" : " (" + string.Join(", ", sb.Snapshots.Select(r => r.Name)) + ")";
        return string.Create(CultureInfo.InvariantCulture,
            $"generation {sb.Generation}: {sb.Snapshots.Count} snapshot{(sb.Snapshots.Count == 1 ? "" : "s")}{names}");
    }

    /// <summary>The name of <paramref name="type"/>, or "type N".</summary>
    public static string Name(ushort type) => Names.TryGetValue(type, out var n) ? n : $"type {type}";

    /// <summary>Parses a type given as a number or a known name.</summary>
    public static bool TryParse(string text, out ushort type)
    {
        if (ushort.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out type)) return true;
        foreach (var (k, v) in Names)
            if (string.Equals(v, text, StringComparison.OrdinalIgnoreCase)) { type = k; return true; }
        return false;
    }

    /// <summary>The known names, for help and errors.</summary>
    public static IEnumerable<string> Known => Names.Values;
}
