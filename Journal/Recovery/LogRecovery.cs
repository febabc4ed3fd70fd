using System.Globalization;
using Journal.Format;

namespace Journal.Recovery;

/// <summary>
/// Crash recovery of the on-disk log: finds the head and the tail, validates every record between them and delivers
/// every complete log transaction in commit order. Reads only; writes nothing.
/// </summary>
/// <remarks>
/// Positions are handled as absolute blocks, <c>abs = cycle * logBlocks + block</c>, so "before" and "after" are plain
/// comparisons across wraps. W is the in-flight window, <see cref="LogFormat.InFlightWindowBlocks"/>: a writer never
/// has more than W blocks written but not durable, counted from the end of its last durable record.
///
/// <para><b>Recovery rules</b>, applied in this order:</para>
/// <list type="number">
/// <item><b>Stamp head.</b> Read the cycle of block 0 (c0) and of the last block (cl). If c0 == cl every block was
/// written in pass c0 and the candidate head is the end of the log. Otherwise binary-search for the first block whose
/// cycle is cl; the candidate is that block, in pass cl + 1. A cycle above <see cref="LogFormat.MaxCycle"/> is
/// corruption.</item>
/// <item><b>Holes.</b> Scan the W blocks before the candidate. Each must carry the cycle of its pass (blocks before
/// block 0 of the candidate's pass belong to the previous pass). The first block that does not is a hole left by a
/// lost or torn write: the head moves back to it. Blocks past the head are never replayed (but see rule 9).</item>
/// <item><b>No record.</b> If no header block (first word = magic) lies within one maximal record before the head,
/// the region is not a log (never formatted, or destroyed): <see cref="CorruptionException"/>.</item>
/// <item><b>Partial last record.</b> If the last header before the head describes a record that runs past the head,
/// part of it was never written: the head moves back to its header (torn head), and rule 3 repeats.</item>
/// <item><b>Bad last record.</b> The last record is read completely (header fields, LSN = its position, cycle stamp in
/// every block, CRC, ops). If it is bad and starts within W blocks of the stamp head, it is a torn write: the head
/// moves back to it and rule 3 repeats. If it is bad and starts earlier, that is corruption.</item>
/// <item><b>Tail.</b> The tail is the tail LSN of the last good record. It must not lie after that record nor so far
/// back that the record would have overwritten it; otherwise corruption.</item>
/// <item><b>Clean log.</b> If the last good record is an unmount record, the log is clean: nothing is replayed and the
/// live log is empty (tail = next LSN).</item>
/// <item><b>Walk.</b> Otherwise every record from the tail to the head is read and checked as in rule 5, and each must
/// name the previous one in its previous-block field. A bad record within W blocks of the stamp head is a torn write:
/// the head moves back to it and recovery restarts at rule 3 (the new last record may carry an older tail). A bad
/// record before that is corruption, reported with its block, LSN, expected and found values.</item>
/// <item><b>Torn or corrupt.</b> Whenever rules 2, 4, 5 or 8 cut the log short, the blocks past the cut (up to the
/// in-flight window) are searched for good records of the same pass. Each record carries the LSN the writer knew to
/// be durable when it sealed it; if one of them is at or past the cut, the cut-off part had been on stable storage
/// and cannot be a torn write: corruption.</item>
/// <item><b>Reassembly.</b> Ops are grouped by transaction id. A start op opens a transaction (a second start of an open
/// id drops the first as incomplete); region ops append to it, pieces flagged continue / was-continued / end are
/// joined into one region; the commit op completes it. Ops of an id with no open transaction (its start lies before
/// the tail) are ignored and the id counted as incomplete. A region piece out of sequence inside a valid record is
/// corruption.</item>
/// <item><b>Delivery.</b> Only after every record has been validated, complete transactions are delivered in the order
/// of their commit ops, each with its start and commit LSN. Transactions without a commit op are never delivered.</item>
/// </list>
/// </remarks>
public static class LogRecovery
{
    /// <summary>
    /// Recovers the log in <paramref name="region"/>: validates it, then calls <paramref name="deliver"/> for every
    /// complete transaction in commit order. Throws <see cref="CorruptionException"/> when the log is damaged anywhere
    /// but at its head; device errors surface as <see cref="Storage.BlockDeviceException"/>. Writes nothing.
    /// </summary>
    public static RecoveryResult Recover(LogRegion region, Action<RecoveredTransaction>? deliver = null, CancellationToken cancellationToken = default)
    {
        var reader = new LogReader(region);
        var scan = new Scan(reader, region, cancellationToken);
        var result = scan.Run(out var transactions);
        if (deliver is not null)
            foreach (var t in transactions) deliver(t);
        return result;
    }

    private sealed class Scan(LogReader reader, LogRegion region, CancellationToken ct)
    {
        private readonly uint _n = region.BlockCount;
        private readonly long _w = LogFormat.InFlightWindowBlocks(region.BlockCount);
        private string Name => region.Name;

        public RecoveryResult Run(out List<RecoveredTransaction> delivered)
        {
            long stampHead = FindStampHead(out long candidate);   // rules 1, 2
            long tornFrom = stampHead - _w;                // records starting here or later may be torn
            long head = stampHead;
            bool torn = false;
            int restarts = 0;
            (long Abs, RecordProblem Problem)? badHeader = null;   // the last bad header rule 5 cut off, for rule 3's error
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                if (++restarts > 1_000_000) throw Corrupt(head, "recovery does not converge on a head");

                // Rules 3-5: the last good record before the head.
                long lastAbs = FindHeaderBefore(head, badHeader);
                var last = reader.TryReadRecord(lastAbs, out var rec, out var problem) ? rec! : null;
                if (last is not null && lastAbs + last.Blocks > head)
                {
                    head = lastAbs; torn = true; continue;  // rule 4
                }
                if (last is null)
                {
                    // A header that claims to run past the head is a partial write (rule 4) even if it fails checks.
                    if (lastAbs >= tornFrom || HeaderRunsPast(lastAbs, head)) { badHeader = (lastAbs, problem!); head = lastAbs; torn = true; continue; }
                    throw problem!.ToException(Name, reader.LsnAt(lastAbs));  // rule 5
                }
                head = lastAbs + last.Blocks;

                // Rule 6: the tail.
                long tailAbs = reader.Position(last.Header.TailLsn);
                if (tailAbs > lastAbs || tailAbs < lastAbs + last.Blocks - _n)
                    throw new CorruptionException(Name, last.Lsn.Block, last.Lsn, "record tail LSN out of range",
                        $"{reader.LsnAt(Math.Max(0, lastAbs + last.Blocks - _n))}..{last.Lsn}", last.Header.TailLsn.ToString());

                // Rule 7: clean log.
                if (last.Kind == RecordKind.Unmount)
                {
                    CheckCutNotAttested(head, Math.Max(stampHead, candidate));
                    delivered = new List<RecoveredTransaction>();
                    return Result(last, head, head, clean: true, records: 1, 0, torn, stampHead, 0, 1);
                }

                // Rule 8: walk from the tail.
                var records = new List<LogRecord>();
                long pos = tailAbs;
                long badAt = -1;
                while (pos < head)
                {
                    ct.ThrowIfCancellationRequested();
                    if (!reader.TryReadRecord(pos, out var r, out var p))
                    {
                        if (pos >= tornFrom) { badAt = pos; break; }
                        throw p!.ToException(Name, reader.LsnAt(pos));
                    }
                    if (records.Count > 0 && r!.Header.PreviousBlock != records[^1].Lsn.Block)
                    {
                        if (pos >= tornFrom) { badAt = pos; break; }
                        throw new CorruptionException(Name, r.Lsn.Block, r.Lsn, "previous-record block does not name the record before",
                            records[^1].Lsn.Block.ToString(CultureInfo.InvariantCulture), r.Header.PreviousBlock.ToString(CultureInfo.InvariantCulture));
                    }
                    if (pos + r!.Blocks > head)
                        throw new CorruptionException(Name, r.Lsn.Block, r.Lsn, "record runs past the last record's end",
                            $"<= {reader.LsnAt(head)}", reader.LsnAt(pos + r.Blocks).ToString());
                    records.Add(r);
                    pos += r.Blocks;
                }
                if (badAt >= 0) { head = badAt; torn = true; continue; }
                CheckCutNotAttested(head, Math.Max(stampHead, candidate));

                // Rules 10, 11.
                var (transactions, dropped, maxTid) = Reassemble(records);
                delivered = transactions;
                uint nextTid = maxTid == uint.MaxValue ? 1 : maxTid + 1;
                return Result(last, reader.Position(last.Header.TailLsn), head, clean: false, records.Count, transactions.Count,
                    torn, stampHead, dropped, nextTid);
            }
        }

        private RecoveryResult Result(LogRecord last, long tailAbs, long head, bool clean, int records, int delivered,
            bool torn, long stampHead, int dropped, uint nextTid) => new()
            {
                Region = region,
                HeadLsn = last.Lsn,
                TailLsn = reader.LsnAt(tailAbs),
                NextLsn = reader.LsnAt(head),
                Clean = clean,
                RecordsScanned = records,
                TransactionsDelivered = delivered,
                TornHeadTruncated = torn || stampHead > head,
                DiscardedBlocks = Math.Max(0, stampHead - head),
                IncompleteTransactionsDropped = dropped,
                NextTransactionId = nextTid,
                StaleEndAbs = Math.Max(stampHead, head) + _w,
            };

        /// <summary>Rules 1 and 2: the absolute block of the first block not written in the current pass.</summary>
        private long FindStampHead(out long candidate)
        {
            uint c0 = reader.BlockCycle(0);
            uint cl = reader.BlockCycle(_n - 1);
            if (c0 > LogFormat.MaxCycle || cl > LogFormat.MaxCycle)
                throw new CorruptionException(Name, c0 > LogFormat.MaxCycle ? 0 : _n - 1, Lsn.Zero, "block cycle stamp out of range",
                    $"<= {LogFormat.MaxCycle}", Math.Max(c0, cl).ToString(CultureInfo.InvariantCulture));
            if (c0 == cl)
            {
                candidate = (long)c0 * _n + _n;
            }
            else
            {
                long lo = 0, hi = _n - 1;       // cycle(lo) != cl, cycle(hi) == cl
                while (hi - lo > 1)
                {
                    long mid = lo + (hi - lo) / 2;
                    if (reader.BlockCycle((uint)mid) == cl) hi = mid; else lo = mid;
                }
                candidate = ((long)cl + 1) * _n + hi;
            }

            long start = Math.Max(0, candidate - _w);
            var buf = new byte[(int)Math.Min(256, Math.Max(1, candidate - start)) * LogFormat.BlockSize];
            for (long pos = start; pos < candidate;)
            {
                ct.ThrowIfCancellationRequested();
                int count = (int)Math.Min(candidate - pos, buf.Length / LogFormat.BlockSize);
                var span = buf.AsSpan(0, count * LogFormat.BlockSize);
                reader.ReadBlocks(pos % _n, span);
                for (int i = 0; i < count; i++)
                {
                    long abs = pos + i;
                    if (RecordCodec.BlockCycle(span.Slice(i * LogFormat.BlockSize, LogFormat.BlockSize)) != (ulong)(abs / _n))
                        return abs;
                }
                pos += count;
            }
            return candidate;
        }

        /// <summary>
        /// Rule 3: the absolute block of the last header block before <paramref name="head"/>. When there is none and
        /// rule 5 cut a bad header off on the way here, the error says what was wrong with it.
        /// </summary>
        private long FindHeaderBefore(long head, (long Abs, RecordProblem Problem)? badHeader)
        {
            long limit = Math.Max(0, head - LogFormat.MaxRecordBlocks);
            var block = new byte[LogFormat.BlockSize];
            for (long abs = head - 1; abs >= limit; abs--)
            {
                reader.ReadBlocks(abs % _n, block);
                if (RecordCodec.IsHeaderBlock(block)) return abs;
            }
            var at = reader.LsnAt(Math.Max(0, head));
            if (badHeader is { } bad)
            {
                var b = reader.LsnAt(bad.Abs);
                throw new CorruptionException(Name, b.Block, b,
                    $"the only record header near the head is bad ({bad.Problem.Problem}); the region does not hold a sound log",
                    bad.Problem.Expected, bad.Problem.Actual);
            }
            throw new CorruptionException(Name, at.Block, Lsn.Zero,
                $"no record header within {LogFormat.MaxRecordBlocks} blocks before the head at {at}; the region does not hold a formatted log");
        }

        private bool HeaderRunsPast(long abs, long head)
        {
            var block = new byte[LogFormat.BlockSize];
            reader.ReadBlocks(abs % _n, block);
            var h = RecordHeader.Read(block);
            return h.Length <= LogFormat.MaxPayloadBytes && abs + h.RecordBlocks > head;
        }

        /// <summary>
        /// Rule 9: blocks from <paramref name="head"/> on were cut off as a torn write. If a good record written
        /// later (found by its header within the in-flight window past the cut) says the log was durable at or past
        /// the cut, the cut-off part had been on stable storage: that is corruption.
        /// </summary>
        private void CheckCutNotAttested(long head, long seenUpTo)
        {
            if (seenUpTo <= head) return;
            var block = new byte[LogFormat.BlockSize];
            long end = head + _w + LogFormat.MaxRecordBlocks;
            for (long abs = head; abs < end; abs++)
            {
                ct.ThrowIfCancellationRequested();
                reader.ReadBlocks(abs % _n, block);
                if (!RecordCodec.IsHeaderBlock(block)) continue;
                if (!reader.TryReadRecord(abs, out var later, out _)) continue;
                var durable = later!.Header.DurableLsn;
                if (durable.IsZero || reader.Position(durable) < head) continue;
                var at = reader.LsnAt(head);
                string why = reader.TryReadRecord(head, out _, out var p) ? "the log ends early" : p!.Problem;
                throw new CorruptionException(Name, at.Block, at,
                    $"damaged record ({why}) although the later record {later.Lsn} shows the log was durable up to {durable}");
            }
        }

        private (List<RecoveredTransaction>, int Dropped, uint MaxTid) Reassemble(List<LogRecord> records)
        {
            var open = new Dictionary<uint, Pending>();
            var orphans = new HashSet<uint>();
            var done = new List<RecoveredTransaction>();
            int dropped = 0;
            uint maxTid = 0;
            foreach (var rec in records)
            {
                foreach (var op in rec.Ops)
                {
                    uint tid = op.Header.TransactionId;
                    if (tid > maxTid) maxTid = tid;
                    var f = op.Header.Flags;
                    if (f == OpFlags.Start)
                    {
                        if (open.Remove(tid)) dropped++;
                        open[tid] = new Pending(rec.Lsn);
                        continue;
                    }
                    if (!open.TryGetValue(tid, out var t))
                    {
                        if (orphans.Add(tid)) dropped++;
                        continue;
                    }
                    if (f == OpFlags.Commit)
                    {
                        if (t.Partial is not null) throw OutOfSequence(rec, op, "commit while a split region is unfinished");
                        open.Remove(tid);
                        done.Add(new RecoveredTransaction(tid, t.Start, rec.Lsn, t.Regions));
                        continue;
                    }
                    bool was = (f & OpFlags.WasContinued) != 0;
                    if (was != (t.Partial is not null))
                        throw OutOfSequence(rec, op, was ? "continuation without a split region" : "new region while a split region is unfinished");
                    if (f == OpFlags.None) { t.Regions.Add(op.Data); continue; }
                    t.Partial ??= new List<ReadOnlyMemory<byte>>();
                    t.Partial.Add(op.Data);
                    if ((f & OpFlags.End) != 0)
                    {
                        var joined = new byte[t.Partial.Sum(p => p.Length)];
                        int off = 0;
                        foreach (var p in t.Partial) { p.Span.CopyTo(joined.AsSpan(off)); off += p.Length; }
                        t.Regions.Add(joined);
                        t.Partial = null;
                    }
                }
            }
            dropped += open.Count;
            return (done, dropped, maxTid);
        }

        private CorruptionException OutOfSequence(LogRecord rec, LogOp op, string what) =>
            new(Name, rec.Lsn.Block, rec.Lsn, $"op of transaction 0x{op.Header.TransactionId:x8} out of sequence: {what}",
                null, OpHeader.FlagsText(op.Header.Flags));

        private CorruptionException Corrupt(long abs, string problem)
        {
            var lsn = reader.LsnAt(abs);
            return new CorruptionException(Name, lsn.Block, lsn, problem);
        }

        private sealed class Pending(Lsn start)
        {
            public Lsn Start { get; } = start;
            public List<ReadOnlyMemory<byte>> Regions { get; } = new();
            public List<ReadOnlyMemory<byte>>? Partial { get; set; }
        }
    }
}
