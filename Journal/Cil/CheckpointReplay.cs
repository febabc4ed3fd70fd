using System.Collections;
using Journal.Format;
using Journal.Recovery;

namespace Journal.Cil;

/// <summary>
/// Replays recovered checkpoints into the registered item handlers (the checkpoint half of recovery; finding and
/// validating log records is the log's). Fed complete log transactions in commit order.
/// </summary>
/// <remarks>
/// Cases, for each delivered log transaction:
/// <list type="number">
/// <item>No regions, a first region that is not a 32-byte checkpoint header, a wrong magic, version or header size:
/// corruption (this log only holds checkpoints).</item>
/// <item>A sequence not above the previous checkpoint's: corruption (commit records are written in sequence order).</item>
/// <item>Counts that disagree with the regions delivered (item count, region count, payload bytes), an item header
/// with a wrong magic or size, region lengths that disagree with the item header: corruption. The whole checkpoint
/// is validated before any item of it is applied.</item>
/// <item>An item type with no registered handler: refused with a clear error before anything of the checkpoint is
/// applied.</item>
/// <item>An item whose home copy reflects this checkpoint's start LSN or a later one: skipped (idempotent replay).</item>
/// <item>Otherwise: applied with the checkpoint's start LSN.</item>
/// </list>
/// After the last one, every handler's <see cref="IItemRecoveryHandler.Complete"/> is called once.
/// </remarks>
internal sealed class CheckpointReplay
{
    private readonly string _logName;
    private readonly IReadOnlyDictionary<ushort, IItemRecoveryHandler> _handlers;
    private readonly List<(ushort Type, ulong Id, int First, int Count)> _items = new();

    public CheckpointReplay(string logName, IReadOnlyDictionary<ushort, IItemRecoveryHandler> handlers)
    {
        _logName = logName;
        _handlers = handlers;
    }

    public ulong LastSequence { get; private set; }
    public Lsn LastStartLsn { get; private set; }
    public long Checkpoints { get; private set; }
    public long ItemsApplied { get; private set; }
    public long ItemsSkipped { get; private set; }

    private CorruptionException Corrupt(Lsn lsn, string problem, string? expected = null, string? actual = null) =>
        new(_logName, lsn.Block, lsn, problem, expected, actual);

    /// <summary>Validates and replays one checkpoint.</summary>
    public void Deliver(Lsn start, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        if (regions.Count == 0) throw Corrupt(start, "log transaction has no regions, expected a checkpoint");
        var h0 = regions[0].Span;
        if (h0.Length != CheckpointHeader.Size)
            throw Corrupt(start, "checkpoint header has the wrong length", CheckpointHeader.Size.ToString(), h0.Length.ToString());
        var hdr = CheckpointHeader.Read(h0);
        if (hdr.Magic != CheckpointHeader.MagicValue)
            throw Corrupt(start, "bad checkpoint magic", $"0x{CheckpointHeader.MagicValue:x8}", $"0x{hdr.Magic:x8}");
        if (hdr.Version != CheckpointHeader.CurrentVersion || hdr.HeaderSize != CheckpointHeader.Size)
            throw Corrupt(start, "unsupported checkpoint version or header size", $"{CheckpointHeader.CurrentVersion}/{CheckpointHeader.Size}", $"{hdr.Version}/{hdr.HeaderSize}");
        if (hdr.Sequence <= LastSequence)
            throw Corrupt(start, "checkpoint sequence does not increase", $"> {LastSequence}", hdr.Sequence.ToString());
        if (hdr.RegionCount != regions.Count - 1)
            throw Corrupt(start, $"checkpoint {hdr.Sequence} region count disagrees with the log", hdr.RegionCount.ToString(), (regions.Count - 1).ToString());

        _items.Clear();
        ulong payload = 0;
        int r = 1;
        while (r < regions.Count)
        {
            var ih = regions[r].Span;
            payload += (ulong)ih.Length;
            if (ih.Length < ItemHeader.FixedSize)
                throw Corrupt(start, $"checkpoint {hdr.Sequence} item header at region {r} is too short", $">= {ItemHeader.FixedSize}", ih.Length.ToString());
            var item = ItemHeader.Read(ih);
            if (item.Magic != ItemHeader.MagicValue)
                throw Corrupt(start, $"checkpoint {hdr.Sequence} region {r}: bad item magic", $"0x{ItemHeader.MagicValue:x8}", $"0x{item.Magic:x8}");
            if (ih.Length != ItemHeader.SizeFor(item.RegionCount))
                throw Corrupt(start, $"checkpoint {hdr.Sequence} item {item.ItemType}:{item.ItemId} header length", ItemHeader.SizeFor(item.RegionCount).ToString(), ih.Length.ToString());
            if (r + 1 + item.RegionCount > regions.Count)
                throw Corrupt(start, $"checkpoint {hdr.Sequence} item {item.ItemType}:{item.ItemId} has fewer regions than its header says", item.RegionCount.ToString(), (regions.Count - r - 1).ToString());
            for (int k = 0; k < item.RegionCount; k++)
            {
                int len = regions[r + 1 + k].Length;
                uint want = ItemHeader.RegionLength(ih, k);
                if (want != (uint)len)
                    throw Corrupt(start, $"checkpoint {hdr.Sequence} item {item.ItemType}:{item.ItemId} region {k} length", want.ToString(), len.ToString());
                payload += (ulong)len;
            }
            if (!_handlers.ContainsKey(item.ItemType))
                throw new JournalException($"{_logName}: LSN {start}: checkpoint {hdr.Sequence} holds item type {item.ItemType} (item {item.ItemId}) and no recovery handler is registered for it");
            _items.Add((item.ItemType, item.ItemId, r + 1, item.RegionCount));
            r += 1 + item.RegionCount;
        }
        if (hdr.ItemCount != _items.Count)
            throw Corrupt(start, $"checkpoint {hdr.Sequence} item count disagrees with its regions", hdr.ItemCount.ToString(), _items.Count.ToString());
        if (hdr.PayloadBytes != payload)
            throw Corrupt(start, $"checkpoint {hdr.Sequence} payload bytes disagree with its regions", hdr.PayloadBytes.ToString(), payload.ToString());

        foreach (var (type, id, first, count) in _items)
        {
            var handler = _handlers[type];
            if (start <= handler.GetHomeLsn(id)) { ItemsSkipped++; continue; }
            handler.Apply(id, start, new RegionSlice(regions, first, count));
            ItemsApplied++;
        }
        LastSequence = hdr.Sequence;
        LastStartLsn = start;
        Checkpoints++;
    }

    /// <summary>Calls every handler's completion hook once.</summary>
    public void Complete()
    {
        foreach (var h in _handlers.Values.Distinct()) h.Complete();
    }

    private sealed class RegionSlice(IReadOnlyList<ReadOnlyMemory<byte>> all, int first, int count) : IReadOnlyList<ReadOnlyMemory<byte>>
    {
        public ReadOnlyMemory<byte> this[int index] =>
            (uint)index < (uint)count ? all[first + index] : throw new ArgumentOutOfRangeException(nameof(index));
        public int Count => count;
        public IEnumerator<ReadOnlyMemory<byte>> GetEnumerator() { for (int i = 0; i < count; i++) yield return all[first + i]; }
        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
