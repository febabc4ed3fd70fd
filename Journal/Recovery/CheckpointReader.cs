using System.Globalization;
using Journal.Format;

namespace Journal.Recovery;

/// <summary>
/// Reads complete log transactions back as checkpoints (the encoding in <c>Journal/Format/CheckpointFormat.cs</c>) and
/// validates each as a whole. The one decoder of checkpoints: the journal's recovery, the snapshot store's recovery and
/// <c>jreplay</c> all read checkpoints through it, so they accept and refuse exactly the same logs.
/// </summary>
/// <remarks>
/// <para><b>Cases</b>, for each log transaction, in commit order. Every check runs before anything is returned, and a
/// refused checkpoint changes nothing (not even <see cref="LastSequence"/>). Each refusal is a
/// <see cref="CorruptionException"/> naming the log, the block and LSN of the transaction's start record, what is
/// wrong, and the expected and found values.</para>
/// <list type="number">
/// <item><b>Header.</b> No regions, a first region that is not <see cref="CheckpointHeader.Size"/> bytes, a wrong magic,
/// version or header size: corruption (this log only holds checkpoints).</item>
/// <item><b>Sequence.</b> A sequence not above the previous checkpoint's: corruption (commit records reach the log in
/// sequence order, and sequences continue across opens).</item>
/// <item><b>Region count.</b> A header region count other than the transaction's regions after the header:
/// corruption.</item>
/// <item><b>Item headers.</b> Each item header must be at least <see cref="ItemHeader.FixedSize"/> bytes, carry the
/// item magic, be exactly <see cref="ItemHeader.SizeFor"/> its region count long, and be followed by at least that many
/// regions, each exactly as long as the header says: otherwise corruption.</item>
/// <item><b>Totals.</b> The header's item count and payload bytes must equal the items and bytes found: otherwise
/// corruption.</item>
/// <item><b>Result.</b> Otherwise the checkpoint is returned with its items (views of the delivered regions, no copy),
/// and its sequence becomes <see cref="LastSequence"/>.</item>
/// </list>
/// </remarks>
public sealed class CheckpointReader
{
    private readonly string _logName;
    private readonly List<CheckpointItem> _items = new();

    /// <summary>
    /// A reader of the checkpoints of the log named <paramref name="logName"/> (used in error messages). The first
    /// checkpoint read must have a sequence above <paramref name="previousSequence"/>.
    /// </summary>
    public CheckpointReader(string logName, ulong previousSequence = 0)
    {
        ArgumentNullException.ThrowIfNull(logName);
        _logName = logName;
        LastSequence = previousSequence;
    }

    /// <summary>The sequence of the last checkpoint read (the starting value before the first).</summary>
    public ulong LastSequence { get; private set; }

    /// <summary>Reads <paramref name="transaction"/> as a checkpoint (see the cases).</summary>
    /// <exception cref="CorruptionException">The transaction is not a sound checkpoint.</exception>
    public Checkpoint Read(RecoveredTransaction transaction)
    {
        ArgumentNullException.ThrowIfNull(transaction);
        return Read(transaction.TransactionId, transaction.StartLsn, transaction.CommitLsn, transaction.Regions);
    }

    /// <summary>
    /// Reads the log transaction <paramref name="transactionId"/> (start op in the record at
    /// <paramref name="startLsn"/>, commit op at <paramref name="commitLsn"/>, <paramref name="regions"/> in order) as a
    /// checkpoint (see the cases). The regions are referenced, not copied.
    /// </summary>
    /// <exception cref="CorruptionException">The transaction is not a sound checkpoint.</exception>
    public Checkpoint Read(uint transactionId, Lsn startLsn, Lsn commitLsn, IReadOnlyList<ReadOnlyMemory<byte>> regions)
    {
        ArgumentNullException.ThrowIfNull(regions);
        CorruptionException Corrupt(string problem, string? expected = null, string? actual = null) =>
            new(_logName, startLsn.Block, startLsn, problem, expected, actual);
        static string N(long v) => v.ToString(CultureInfo.InvariantCulture);

        // Case 1: the header.
        if (regions.Count == 0) throw Corrupt("log transaction has no regions, expected a checkpoint");
        var h0 = regions[0].Span;
        if (h0.Length != CheckpointHeader.Size)
            throw Corrupt("checkpoint header has the wrong length", N(CheckpointHeader.Size), N(h0.Length));
        var hdr = CheckpointHeader.Read(h0);
        if (hdr.Magic != CheckpointHeader.MagicValue)
            throw Corrupt("bad checkpoint magic", $"0x{CheckpointHeader.MagicValue:x8}", $"0x{hdr.Magic:x8}");
        if (hdr.Version != CheckpointHeader.CurrentVersion || hdr.HeaderSize != CheckpointHeader.Size)
            throw Corrupt("unsupported checkpoint version or header size", $"{CheckpointHeader.CurrentVersion}/{CheckpointHeader.Size}", $"{hdr.Version}/{hdr.HeaderSize}");
        // Case 2: the sequence.
        if (hdr.Sequence <= LastSequence)
            throw Corrupt($"checkpoint {hdr.Sequence}: sequence does not increase", $"> {LastSequence}", hdr.Sequence.ToString(CultureInfo.InvariantCulture));
        // Case 3: the region count.
        if (hdr.RegionCount != regions.Count - 1)
            throw Corrupt($"checkpoint {hdr.Sequence} region count disagrees with the log", N(hdr.RegionCount), N(regions.Count - 1));

        // Case 4: the item headers and their regions.
        _items.Clear();
        ulong payload = 0;
        long total = h0.Length;
        int r = 1;
        while (r < regions.Count)
        {
            var ih = regions[r].Span;
            payload += (ulong)ih.Length;
            if (ih.Length < ItemHeader.FixedSize)
                throw Corrupt($"checkpoint {hdr.Sequence} item header at region {r} is too short", $">= {ItemHeader.FixedSize}", N(ih.Length));
            var item = ItemHeader.Read(ih);
            if (item.Magic != ItemHeader.MagicValue)
                throw Corrupt($"checkpoint {hdr.Sequence} region {r}: bad item magic", $"0x{ItemHeader.MagicValue:x8}", $"0x{item.Magic:x8}");
            if (ih.Length != ItemHeader.SizeFor(item.RegionCount))
                throw Corrupt($"checkpoint {hdr.Sequence} item {item.ItemType}:{item.ItemId} header length", N(ItemHeader.SizeFor(item.RegionCount)), N(ih.Length));
            if (r + 1 + item.RegionCount > regions.Count)
                throw Corrupt($"checkpoint {hdr.Sequence} item {item.ItemType}:{item.ItemId} has fewer regions than its header says", N(item.RegionCount), N(regions.Count - r - 1));
            for (int k = 0; k < item.RegionCount; k++)
            {
                int len = regions[r + 1 + k].Length;
                uint want = ItemHeader.RegionLength(ih, k);
                if (want != (uint)len)
                    throw Corrupt($"checkpoint {hdr.Sequence} item {item.ItemType}:{item.ItemId} region {k} length", want.ToString(CultureInfo.InvariantCulture), N(len));
                payload += (ulong)len;
            }
            _items.Add(new CheckpointItem(item.ItemType, item.ItemId, new CheckpointItem.RegionSlice(regions, r + 1, item.RegionCount)));
            r += 1 + item.RegionCount;
        }
        // Case 5: the totals.
        if (hdr.ItemCount != _items.Count)
            throw Corrupt($"checkpoint {hdr.Sequence} item count disagrees with its regions", N(hdr.ItemCount), N(_items.Count));
        if (hdr.PayloadBytes != payload)
            throw Corrupt($"checkpoint {hdr.Sequence} payload bytes disagree with its regions", hdr.PayloadBytes.ToString(CultureInfo.InvariantCulture), payload.ToString(CultureInfo.InvariantCulture));

        // Case 6: the result.
        total += (long)payload;
        LastSequence = hdr.Sequence;
        return new Checkpoint(hdr.Sequence, transactionId, startLsn, commitLsn, total, _items.ToArray());
    }
}
