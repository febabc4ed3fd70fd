using System.Buffers.Binary;
using System.CommandLine;
using System.Globalization;
using Journal.Format;
using Journal.Recovery;
using Journal.Tools;
using Snapshot.Recovery;

namespace JReplay;

/// <summary>
/// <c>jreplay print &lt;path&gt; [--json] [--from-lsn c:b] [--to-lsn c:b] [--item-type t]</c>: the log's records with
/// their ops, then the checkpoints recovery would replay with their items (like xfs_logprint). Read-only.
/// </summary>
/// <remarks>
/// Range: by default the live log, from the tail to the head (for a clean log, the unmount record at the head);
/// <c>--from-lsn</c> and <c>--to-lsn</c> (inclusive) choose other records, which must be sound records (an LSN where
/// there is none is a usage error, exit 64). With <c>--item-type</c> only checkpoints holding items of that type are
/// printed, with only those items. Checkpoints are read by the journal's <see cref="CheckpointReader"/> and items
/// described and validated by the store's decoders (<see cref="StoreLogItems"/>), so print refuses what check and
/// replay refuse in the log. A log recovery refuses is printed as far as possible by scanning every block for record
/// headers; the damage is reported on stderr and the exit code is 2.
/// </remarks>
internal static class PrintCommand
{
    public static Command Create(ToolConsole console)
    {
        var path = CommonOptions.Path("path", "A snapshot store folder or a bare log file.");
        var json = CommonOptions.Json();
        var from = LsnOptions.Create("--from-lsn", "Print records from this LSN (cycle:block) on.");
        var to = LsnOptions.Create("--to-lsn", "Print records up to and including this LSN (cycle:block).");
        var itemType = new Option<ushort?>("--item-type")
        {
            Description = "Print only checkpoints holding items of this type (a number or a type name), and only those items.",
            HelpName = "type",
            CustomParser = result =>
            {
                var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
                if (StoreLogItems.TryParseType(text, out ushort t)) return t;
                string known = string.Join(", ", StoreLogItems.TypeNames);
                result.AddError($"--item-type: '{text}' is not an item type (a number 0-65535{(known.Length > 0 ? " or one of " + known : "")})");
                return null;
            },
        };
        var command = new Command("print", "Print the log's records, checkpoints and items (read-only), like xfs_logprint.") { path, json, from, to, itemType };
        command.SetAction(r => Run(console, r.GetValue(path)!, r.GetValue(json), r.GetValue(from), r.GetValue(to), r.GetValue(itemType)));
        return command;
    }

    private static int Run(ToolConsole console, string path, bool json, Lsn? from, Lsn? to, ushort? itemType)
    {
        using var input = LogInput.Open(path);
        var reader = new LogReader(input.Region);
        RequireRecord(reader, "--from-lsn", from);
        RequireRecord(reader, "--to-lsn", to);
        if (from is { } f && to is { } t0 && reader.Position(f) > reader.Position(t0))
            throw new UsageException($"--from-lsn {f} is after --to-lsn {t0}");
        var doc = new PrintDocument { Log = input.LogPath, LogBlocks = input.Region.BlockCount };
        RecoveredLog? log = null;
        try
        {
            log = input.Scan();
        }
        catch (Journal.JournalException e)
        {
            doc.Errors.Add(e.Message);
        }

        if (log is not null)
        {
            var r = log.Log;
            doc.Clean = r.Clean;
            doc.HeadLsn = r.HeadLsn.ToString();
            doc.TailLsn = r.TailLsn.ToString();
            doc.NextLsn = r.NextLsn.ToString();
            if (itemType is null)
            {
                var start = from ?? (r.Clean ? r.HeadLsn : r.TailLsn);
                var end = to ?? r.HeadLsn;
                ReadRange(reader, start, end, doc);
            }
            var names = input.SnapshotNames();
            foreach (var c in log.Checkpoints.Select(c => CheckpointInfo.From(c, names)))
            {
                var items = itemType is { } t ? c.Items.Where(i => i.Type == t).ToArray() : c.Items;
                if (itemType is not null && items.Count == 0) continue;
                doc.Checkpoints.Add(PrintDocument.Checkpoint.From(c, items));
            }
        }
        else if (itemType is null)
        {
            ScanAll(reader, from, to, doc);
        }

        if (json) JsonOutput.Write(console.Out, doc);
        else doc.WriteText(console.Out, itemType is null);
        foreach (var e in doc.Errors) console.Error.WriteLine($"{console.Name}: {e}");
        return doc.Errors.Count == 0 ? ExitCodes.Success : ExitCodes.Failure;
    }

    /// <summary>An LSN option must name a sound record of the log; otherwise a usage error naming the LSN and what is there.</summary>
    private static void RequireRecord(LogReader reader, string option, Lsn? lsn)
    {
        if (lsn is not { } l) return;
        try
        {
            reader.ReadRecord(l);
        }
        catch (CorruptionException e)
        {
            throw new UsageException($"{option} {l}: no record of the log {reader.Region.Name} there ({e.Problem}{(e.Expected is null && e.Actual is null ? "" : $": expected {e.Expected ?? "?"}, found {e.Actual ?? "?"}")})");
        }
    }

    /// <summary>Reads the sound records from <paramref name="from"/> through <paramref name="to"/>; stops at the first bad one.</summary>
    private static void ReadRange(LogReader reader, Lsn from, Lsn to, PrintDocument doc)
    {
        long pos = reader.Position(from), end = reader.Position(to);
        long limit = pos + reader.Region.BlockCount; // never more than one pass
        while (pos <= end && pos < limit)
        {
            LogRecord record;
            try
            {
                record = reader.ReadRecord(reader.LsnAt(pos));
            }
            catch (CorruptionException e)
            {
                doc.Errors.Add(e.Message);
                return;
            }
            doc.Records.Add(PrintDocument.Record.From(record));
            pos += record.Blocks;
        }
    }

    /// <summary>For a log recovery refuses: every block that holds a record header, in block order, sound or not.</summary>
    private static void ScanAll(LogReader reader, Lsn? from, Lsn? to, PrintDocument doc)
    {
        uint n = reader.Region.BlockCount;
        uint first = from?.Block ?? 0, last = to?.Block ?? n - 1;
        var block = new byte[LogFormat.BlockSize];
        for (uint b = first; b <= last && b < n;)
        {
            reader.ReadBlocks(b, block);
            if (BinaryPrimitives.ReadUInt32LittleEndian(block) != LogFormat.RecordMagic) { b++; continue; }
            uint cycle = BinaryPrimitives.ReadUInt32LittleEndian(block.AsSpan(4));
            var lsn = new Lsn(cycle, b);
            if (reader.TryReadRecord(lsn, out var record, out var problem))
            {
                doc.Records.Add(PrintDocument.Record.From(record!));
                b += (uint)record!.Blocks;
            }
            else
            {
                doc.Records.Add(PrintDocument.Record.Bad(lsn, problem!.Message));
                b++;
            }
        }
    }
}

/// <summary>What <c>jreplay print</c> shows; serialised as is for <c>--json</c>.</summary>
internal sealed class PrintDocument
{
    public string Log { get; set; } = "";
    public uint LogBlocks { get; set; }
    public bool? Clean { get; set; }
    public string? HeadLsn { get; set; }
    public string? TailLsn { get; set; }
    public string? NextLsn { get; set; }
    public List<Record> Records { get; } = new();
    public List<Checkpoint> Checkpoints { get; } = new();
    public List<string> Errors { get; } = new();

    public sealed record Op(uint Tid, uint Length, string Client, string Flags, string? Decoded);

    public sealed record Record(string Lsn, string Kind, uint Length, int Blocks, uint OpCount, string TailLsn, string PrevBlock, string Crc,
        IReadOnlyList<Op> Ops, string? Error)
    {
        public static Record From(LogRecord r) => new(
            r.Lsn.ToString(), RecordHeader.KindText(r.Kind), r.Header.Length, r.Blocks, r.Header.OpCount, r.Header.TailLsn.ToString(),
            r.Header.PreviousBlock == LogFormat.NoPreviousBlock ? "none" : r.Header.PreviousBlock.ToString(CultureInfo.InvariantCulture),
            $"0x{r.Header.Crc:x8}",
            r.Ops.Select(o => new Op(o.Header.TransactionId, o.Header.Length,
                o.Header.ClientId == LogClientId.Transaction ? "trans" : $"0x{(byte)o.Header.ClientId:x2}",
                OpHeader.FlagsText(o.Header.Flags), Decode(o))).ToArray(),
            null);

        public static Record Bad(Lsn lsn, string error) => new(lsn.ToString(), "BAD", 0, 1, 0, "", "", "", [], error);
    }

    public sealed record Item(ushort Type, string TypeName, ulong Id, int Regions, long Bytes, string? Detail);

    public sealed record Checkpoint(ulong Sequence, uint Tid, string StartLsn, string CommitLsn, long Bytes, IReadOnlyList<Item> Items)
    {
        public static Checkpoint From(CheckpointInfo c, IReadOnlyList<ItemInfo> items) => new(
            c.Sequence, c.TransactionId, c.StartLsn.ToString(), c.CommitLsn.ToString(), c.Bytes,
            items.Select(i => new Item(i.Type, i.TypeName, i.Id, i.Regions, i.Bytes, i.Detail)).ToArray());
    }

    /// <summary>What the data of an op is, when it is a whole (or first) region with a known header.</summary>
    private static string? Decode(LogOp op)
    {
        if ((op.Header.Flags & (OpFlags.Start | OpFlags.Commit)) != 0) return null;
        if ((op.Header.Flags & OpFlags.WasContinued) != 0) return "region (continued)";
        var d = op.Data.Span;
        if (d.Length >= CheckpointHeader.Size && BinaryPrimitives.ReadUInt32LittleEndian(d) == CheckpointHeader.MagicValue)
        {
            var h = CheckpointHeader.Read(d);
            return string.Create(CultureInfo.InvariantCulture, $"checkpoint {h.Sequence}: {Count(h.ItemCount, "item")}, {Count(h.RegionCount, "region")}, {h.PayloadBytes} bytes");
        }
        if (d.Length >= ItemHeader.FixedSize && BinaryPrimitives.ReadUInt32LittleEndian(d) == ItemHeader.MagicValue)
        {
            var i = ItemHeader.Read(d);
            return string.Create(CultureInfo.InvariantCulture, $"item {StoreLogItems.TypeName(i.ItemType)} id {i.ItemId}, {Count(i.RegionCount, "region")}");
        }
        return "region";
    }

    private static string Count(long n, string noun) => string.Create(CultureInfo.InvariantCulture, $"{n} {noun}{(n == 1 ? "" : "s")}");

    public void WriteText(TextWriter w, bool withRecords)
    {
        string state = Clean switch { true => "clean", false => "needs replay", null => "corrupt" };
        w.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"log {Log}: {LogBlocks} blocks ({Sizes.Format((long)LogBlocks * LogFormat.BlockSize)}); {(HeadLsn is null ? "" : $"tail {TailLsn}, head {HeadLsn}, next {NextLsn}; ")}{state}"));
        if (withRecords)
        {
            foreach (var r in Records)
            {
                w.WriteLine();
                if (r.Error is not null)
                {
                    w.WriteLine($"record {r.Lsn}  BAD  {r.Error}");
                    continue;
                }
                w.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"record {r.Lsn}  {r.Kind}  len {r.Length} ({r.Blocks} block{(r.Blocks == 1 ? "" : "s")})  ops {r.OpCount}  tail {r.TailLsn}  prev {r.PrevBlock}  crc {r.Crc}"));
                foreach (var o in r.Ops)
                {
                    string flags = o.Flags == "-" ? "" : "  " + o.Flags;
                    w.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"    tid 0x{o.Tid:x8}  len {o.Length,-6}{flags}{(o.Decoded is null ? "" : "  " + o.Decoded)}"));
                }
            }
        }
        if (Clean is null) return;
        w.WriteLine();
        w.WriteLine(string.Create(CultureInfo.InvariantCulture, $"checkpoints to replay: {Checkpoints.Count}"));
        foreach (var c in Checkpoints)
        {
            w.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  checkpoint {c.Sequence}  tid 0x{c.Tid:x8}  start {c.StartLsn}  commit {c.CommitLsn}  items {c.Items.Count}  bytes {c.Bytes}"));
            foreach (var i in c.Items)
                w.WriteLine(string.Create(CultureInfo.InvariantCulture, $"      {i.TypeName} id {i.Id}  regions {i.Regions}  bytes {i.Bytes}{(i.Detail is null ? "" : "  " + i.Detail)}"));
        }
    }
}
