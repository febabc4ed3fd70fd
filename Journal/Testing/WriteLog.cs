using Journal.Storage;

namespace Journal.Testing;

/// <summary>
/// The shared record of every write, growth and flush issued through one or more <see cref="RecordingBlockDevice"/>s,
/// in one global order of completion (like dm-log-writes). It rebuilds any device as of any point and enumerates
/// the states a crash at each point could leave.
/// </summary>
/// <remarks>
/// <para>Points: position <c>p</c> means "entries 0..p-1 had completed". <see cref="ImageAt(int, int)"/> applies every write
/// and growth of the device before <c>p</c>, in order: the state if the crash kept everything issued.</para>
/// <para>Crash model at point p, for each device D: writes of D before the newest of D's flushes recorded before p
/// (precisely: before that flush's <see cref="WriteLogEntry.DurableBefore"/>) are durable and always present. D's
/// writes and growths after that and before p are in flight: each may be kept, lost, or (writes) torn at sector
/// granularity, and kept ones may land in any order. A flush of one device makes nothing of another durable, except
/// between devices registered as <b>sharing flushes</b> (one storage device under them, like files on one ext4 file
/// system, see <see cref="BlockDevice.CanFlushThrough"/>): there a flush of any of them that qualified as a carrier as
/// it began (<see cref="BlockDevice.FlushAsCarrier"/>: no growth of its own uncovered), issued after a
/// <see cref="WriteLogEntryKind.WriteBack"/> of another was recorded, makes that device's writes before the write-back's
/// <see cref="WriteLogEntry.DurableBefore"/> durable too, up to its first growth not covered by a flush of its own (a
/// growth is new blocks and a new size: only the device's own flush makes it durable).</para>
/// <para>Efficiency: each device keeps a cursor image that moves forward through its entries, plus a bounded set of
/// checkpoint images (at most <see cref="MaxCheckpoints"/>, spaced by at least four device sizes of replayed
/// writes, thinned by half when full), so rebuilding states in log order costs one image copy plus the writes
/// replayed since the previous state.</para>
/// <para>Locking: <c>_lock</c> (a monitor) protects the entry list, the per-device indexes, cursors and checkpoints.
/// Recording devices take it briefly to append; <see cref="ImageAt(int, int)"/> holds it while it copies and replays. Nothing
/// waits while holding it, and it is never held across a call into a device.</para>
/// </remarks>
public sealed class WriteLog
{
    /// <summary>Most checkpoint images kept per device.</summary>
    public const int MaxCheckpoints = 16;

    private readonly object _lock = new();
    private readonly List<WriteLogEntry> _entries = new();
    private readonly List<Track> _tracks = new();
    private readonly List<int> _sharedFlushAt = new();       // flushes of devices sharing flushes, increasing
    private readonly List<int> _sharedFlushFrontier = new(); // running max of their DurableBefore

    // Per-device index of the log and the image cache.
    private sealed class Track(WriteLogDevice info, byte[] initial)
    {
        public readonly WriteLogDevice Info = info;
        public readonly byte[] Initial = initial;
        public readonly List<int> Changes = new();        // indices of this device's writes and growths
        public readonly List<int> FlushAt = new();        // indices of this device's flushes, increasing
        public readonly List<int> FlushFrontier = new();  // running max of DurableBefore over FlushAt[0..k]
        public bool SharesFlushes;                        // in the shared-flush group (see the remarks)
        public readonly List<int> WriteBackAt = new();    // indices of this device's write-backs, increasing
        public readonly List<int> WriteBackFrontier = new(); // running max of DurableBefore over WriteBackAt[0..k]
        public readonly List<int> ExtendAt = new();       // indices of this device's growths, increasing
        public byte[]? Cursor;                            // image after Changes[0..CursorPos)
        public int CursorPos;
        public readonly List<(int Pos, byte[] Image)> Checkpoints = new();
        public long ReplayedSinceCheckpoint;
        public long CheckpointInterval = Math.Max(4L * initial.Length, 1 << 20);
    }

    /// <summary>Number of entries so far.</summary>
    public int Count { get { lock (_lock) return _entries.Count; } }

    /// <summary>The entry at <paramref name="index"/>.</summary>
    public WriteLogEntry this[int index] { get { lock (_lock) return _entries[index]; } }

    /// <summary>A copy of the entries so far.</summary>
    public IReadOnlyList<WriteLogEntry> Entries { get { lock (_lock) return _entries.ToArray(); } }

    /// <summary>The registered devices, by id.</summary>
    public IReadOnlyList<WriteLogDevice> Devices { get { lock (_lock) return _tracks.Select(t => t.Info).ToArray(); } }

    /// <summary>Appends a note (e.g. "force returned for transaction 17") and returns its position.</summary>
    public int Mark(string note)
    {
        ArgumentNullException.ThrowIfNull(note);
        lock (_lock)
        {
            int index = _entries.Count;
            _entries.Add(new WriteLogEntry(index, -1, "", WriteLogEntryKind.Mark, 0, null, 0, 0, note));
            return index;
        }
    }

    internal int Register(string name, byte[] initialImage, bool sharesFlushes)
    {
        lock (_lock)
        {
            int id = _tracks.Count;
            _tracks.Add(new Track(new WriteLogDevice(id, name, initialImage.Length >> BlockDevice.SectorShift, _entries.Count), initialImage)
                { SharesFlushes = sharesFlushes });
            return id;
        }
    }

    internal void RecordWrite(int deviceId, long sector, byte[] data)
    {
        lock (_lock)
        {
            Track t = _tracks[deviceId];
            int index = _entries.Count;
            _entries.Add(new WriteLogEntry(index, deviceId, t.Info.Name, WriteLogEntryKind.Write, sector, data, 0, 0, null));
            t.Changes.Add(index);
        }
    }

    internal void RecordExtend(int deviceId, long newSectorCount)
    {
        lock (_lock)
        {
            Track t = _tracks[deviceId];
            int index = _entries.Count;
            _entries.Add(new WriteLogEntry(index, deviceId, t.Info.Name, WriteLogEntryKind.Extend, 0, null, newSectorCount, 0, null));
            t.Changes.Add(index);
            t.ExtendAt.Add(index);
        }
    }

    internal void RecordFlush(int deviceId, int durableBefore, bool carries = false)
    {
        lock (_lock)
        {
            Track t = _tracks[deviceId];
            int index = _entries.Count;
            _entries.Add(new WriteLogEntry(index, deviceId, t.Info.Name, WriteLogEntryKind.Flush, 0, null, 0, durableBefore, null));
            int frontier = t.FlushFrontier.Count == 0 ? durableBefore : Math.Max(durableBefore, t.FlushFrontier[^1]);
            t.FlushAt.Add(index);
            t.FlushFrontier.Add(frontier);
            if (t.SharesFlushes && carries)
            {
                _sharedFlushAt.Add(index);
                _sharedFlushFrontier.Add(_sharedFlushFrontier.Count == 0 ? durableBefore : Math.Max(durableBefore, _sharedFlushFrontier[^1]));
            }
        }
    }

    internal void RecordWriteBack(int deviceId, int durableBefore)
    {
        lock (_lock)
        {
            Track t = _tracks[deviceId];
            int index = _entries.Count;
            _entries.Add(new WriteLogEntry(index, deviceId, t.Info.Name, WriteLogEntryKind.WriteBack, 0, null, 0, durableBefore, null));
            t.WriteBackAt.Add(index);
            t.WriteBackFrontier.Add(t.WriteBackFrontier.Count == 0 ? durableBefore : Math.Max(durableBefore, t.WriteBackFrontier[^1]));
        }
    }

    private Track GetTrack(int deviceId)
    {
        if ((uint)deviceId >= (uint)_tracks.Count)
            throw new ArgumentOutOfRangeException(nameof(deviceId), deviceId, $"no device {deviceId} in the write log ({_tracks.Count} registered)");
        return _tracks[deviceId];
    }

    /// <summary>
    /// The log position before which every write of the device is durable at <paramref name="point"/> (0 if the
    /// device had no flush before it): its own flushes', and for a device sharing flushes, its write-backs covered by
    /// a later shared flush (see the remarks).
    /// </summary>
    public int DurableBefore(int deviceId, int point)
    {
        lock (_lock) return Frontier(GetTrack(deviceId), point);
    }

    // Caller holds _lock.
    private int Frontier(Track t, int point)
    {
        int k = LowerBound(t.FlushAt, point) - 1;   // last flush with index < point
        int own = k < 0 ? 0 : Math.Min(t.FlushFrontier[k], point);
        if (!t.SharesFlushes) return own;
        int f = LowerBound(_sharedFlushAt, point) - 1;   // last shared flush with index < point
        if (f < 0) return own;
        int flushStart = Math.Min(_sharedFlushFrontier[f], point);
        int w = LowerBound(t.WriteBackAt, flushStart) - 1; // last write-back recorded before that flush began
        if (w < 0) return own;
        int shared = Math.Min(t.WriteBackFrontier[w], point);
        // A growth is durable only by the device's own flush: nothing from its first uncovered growth on rides.
        int g = LowerBound(t.ExtendAt, own);
        if (g < t.ExtendAt.Count && t.ExtendAt[g] < shared) shared = t.ExtendAt[g];
        return Math.Max(own, shared);
    }

    // First position in the increasing list whose value is >= value.
    private static int LowerBound(List<int> list, int value)
    {
        int lo = 0, hi = list.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >>> 1;
            if (list[mid] < value) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    /// <summary>
    /// The device's image with every write and growth before log position <paramref name="entryIndex"/> applied in
    /// order (from its content when recording began). A new array each call.
    /// </summary>
    public byte[] ImageAt(int deviceId, int entryIndex)
    {
        byte[]? image = null;
        ImageAt(deviceId, entryIndex, ref image);
        return image;
    }

    /// <summary>
    /// <see cref="ImageAt(int, int)"/> into a caller-owned buffer, reused when its length matches the image's and
    /// replaced otherwise (so a loop over crash states need not allocate a new image each time).
    /// </summary>
    public void ImageAt(int deviceId, int entryIndex, [System.Diagnostics.CodeAnalysis.NotNull] ref byte[]? buffer)
    {
        lock (_lock)
        {
            Track t = GetTrack(deviceId);
            if (entryIndex < 0 || entryIndex > _entries.Count)
                throw new ArgumentOutOfRangeException(nameof(entryIndex), entryIndex, $"log position outside 0..{_entries.Count}");
            int target = LowerBound(t.Changes, entryIndex);
            MoveCursor(t, target);
            if (buffer is null || buffer.Length != t.Cursor!.Length) buffer = GC.AllocateUninitializedArray<byte>(t.Cursor!.Length);
            t.Cursor.CopyTo(buffer, 0);
        }
    }

    /// <summary><see cref="ImageAt(int, int)"/> as a <see cref="MemoryBlockDevice"/> named after the device.</summary>
    public MemoryBlockDevice DeviceAt(int deviceId, int entryIndex)
    {
        byte[] image = ImageAt(deviceId, entryIndex);
        string name;
        lock (_lock) name = _tracks[deviceId].Info.Name;
        return MemoryBlockDevice.Wrap(image, name);
    }

    /// <summary>The entries (write or extend) of the device at positions [from, to), in log order.</summary>
    internal List<WriteLogEntry> ChangesBetween(int deviceId, int from, int to)
    {
        lock (_lock)
        {
            Track t = GetTrack(deviceId);
            var result = new List<WriteLogEntry>();
            for (int i = LowerBound(t.Changes, from); i < t.Changes.Count && t.Changes[i] < to; i++)
                result.Add(_entries[t.Changes[i]]);
            return result;
        }
    }

    // Caller holds _lock. Leaves t.Cursor as the image after t.Changes[0..target).
    private void MoveCursor(Track t, int target)
    {
        if (t.Cursor is null || t.CursorPos > target)
        {
            // Restart from the best checkpoint at or before the target (or the initial image).
            int best = -1;
            for (int i = 0; i < t.Checkpoints.Count; i++)
                if (t.Checkpoints[i].Pos <= target) best = i;
            if (best >= 0) { t.Cursor = ImageCopy.Of(t.Checkpoints[best].Image); t.CursorPos = t.Checkpoints[best].Pos; }
            else { t.Cursor = ImageCopy.Of(t.Initial); t.CursorPos = 0; }
            t.ReplayedSinceCheckpoint = 0;
        }
        while (t.CursorPos < target)
        {
            WriteLogEntry e = _entries[t.Changes[t.CursorPos]];
            t.ReplayedSinceCheckpoint += Apply(ref t.Cursor, e);
            t.CursorPos++;
            if (t.ReplayedSinceCheckpoint >= t.CheckpointInterval) AddCheckpoint(t);
        }
    }

    // Caller holds _lock.
    private static void AddCheckpoint(Track t)
    {
        t.ReplayedSinceCheckpoint = 0;
        // Checkpoints stay ordered by position: when the cursor replays a stretch it has covered before, the
        // checkpoints already taken there serve.
        if (t.Checkpoints.Count > 0 && t.Checkpoints[^1].Pos >= t.CursorPos) return;
        t.Checkpoints.Add((t.CursorPos, ImageCopy.Of(t.Cursor!)));
        if (t.Checkpoints.Count > MaxCheckpoints)
        {
            // Thin out: keep every other one and space future ones twice as far apart.
            for (int i = t.Checkpoints.Count - 2; i >= 0; i -= 2) t.Checkpoints.RemoveAt(i);
            t.CheckpointInterval *= 2;
        }
    }

    // Applies one write or growth; returns the bytes it cost.
    internal static long Apply(ref byte[] image, WriteLogEntry e)
    {
        if (e.Kind == WriteLogEntryKind.Extend)
        {
            long bytes = e.NewSectorCount << BlockDevice.SectorShift;
            if (bytes > image.Length) Array.Resize(ref image, checked((int)bytes));
            return bytes;
        }
        byte[] data = e.RawData!;
        data.CopyTo(image.AsSpan((int)(e.Sector << BlockDevice.SectorShift)));
        return data.Length;
    }

    /// <summary>
    /// The crash states of the log, in point order: at each chosen point, the state that keeps every issued write,
    /// then (when anything is in flight) the state that loses every write in flight, then (when more than one device has
    /// writes in flight) the states that keep only one device's in-flight writes or lose only one device's, alternating
    /// with deterministic variants that keep a prefix of the in-flight writes and tear the next one, or keep a random
    /// subset, tear one, and apply the
    /// survivors in a shuffled order. See <see cref="CrashStateOptions"/> for the points and the caps.
    /// Images are built lazily by <see cref="CrashState.Image(int)"/>.
    /// </summary>
    public IEnumerable<CrashState> CrashStates(CrashStateOptions? options = null)
    {
        options ??= new CrashStateOptions();
        if (options.MaxVariantsPerPoint < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxVariantsPerPoint, "MaxVariantsPerPoint must be at least 1");
        if (options.MaxPoints < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxPoints, "MaxPoints must be at least 1");
        return Enumerate(options);
    }

    private IEnumerable<CrashState> Enumerate(CrashStateOptions options)
    {
        int count, devices;
        List<int> points;
        lock (_lock)
        {
            count = _entries.Count;
            devices = _tracks.Count;
            points = ChoosePoints(count, options);
        }

        foreach (int p in points)
        {
            var frontiers = new int[devices];
            var inFlight = new List<WriteLogEntry>();
            string after;
            lock (_lock)
            {
                for (int d = 0; d < devices; d++)
                {
                    Track t = _tracks[d];
                    frontiers[d] = Frontier(t, p);
                    for (int i = LowerBound(t.Changes, frontiers[d]); i < t.Changes.Count && t.Changes[i] < p; i++)
                        inFlight.Add(_entries[t.Changes[i]]);
                }
                after = p == 0 ? "before any entry" : $"after {_entries[p - 1]}";
            }
            inFlight.Sort((a, b) => a.Index.CompareTo(b.Index));
            foreach (CrashState state in Variants(p, count, after, frontiers, inFlight.ToArray(), options))
                yield return state;
        }
    }

    // Caller holds _lock.
    private List<int> ChoosePoints(int count, CrashStateOptions options)
    {
        var set = new SortedSet<int>();
        if (options.EveryEntry)
        {
            for (int p = 0; p <= count; p++) set.Add(p);
        }
        else
        {
            for (int i = 0; i < count; i++)
                if (_entries[i].Kind == WriteLogEntryKind.Flush) { set.Add(i); set.Add(i + 1); }
            set.Add(count);
        }
        int last = Math.Min(options.LastPoint, count);
        var points = set.Where(p => p >= options.FirstPoint && p <= last).ToList();
        if (points.Count <= options.MaxPoints) return points;
        if (options.MaxPoints == 1) return [points[^1]];
        var thinned = new List<int>(options.MaxPoints);
        for (int i = 0; i < options.MaxPoints; i++)
        {
            int at = (int)((long)i * (points.Count - 1) / (options.MaxPoints - 1));
            if (thinned.Count == 0 || thinned[^1] != points[at]) thinned.Add(points[at]);
        }
        return thinned;
    }

    private IEnumerable<CrashState> Variants(int point, int count, string after, int[] frontiers, WriteLogEntry[] inFlight,
        CrashStateOptions options)
    {
        int n = inFlight.Length;
        int variant = 0;
        yield return new CrashState(this, point, count, variant++, "all issued writes kept", after, frontiers, inFlight,
            new CrashState.Fate[n], null, null);
        if (n == 0 || options.MaxVariantsPerPoint < 2) yield break;

        var allLost = new CrashState.Fate[n];
        Array.Fill(allLost, CrashState.Fate.Lost);
        yield return new CrashState(this, point, count, variant++, "every write in flight lost", after, frontiers, inFlight,
            allLost, null, null);

        var seen = new HashSet<string> { Signature(new CrashState.Fate[n], null), Signature(allLost, null) };
        // The per-device states alternate with the random ones (first one of each), so that a small cap keeps both
        // the state an ordering bug between files shows in and torn writes.
        var deviceStates = DeviceVariants(inFlight).Where(v => seen.Add(Signature(v.Fates, null))).ToList();
        int nextDevice = 0;
        if (nextDevice < deviceStates.Count && variant < options.MaxVariantsPerPoint)
            yield return DeviceState(deviceStates[nextDevice++], point, count, variant++, after, frontiers, inFlight);

        var random = new Random(unchecked(options.Seed * 1_000_003 + point * 7_919 + 17));
        var tearable = Enumerable.Range(0, n).Where(i => inFlight[i].Kind == WriteLogEntryKind.Write && inFlight[i].SectorCount > 1).ToArray();
        for (int attempt = 0; variant < options.MaxVariantsPerPoint && attempt < 4 * options.MaxVariantsPerPoint; attempt++)
        {
            var fates = new CrashState.Fate[n];
            Dictionary<int, bool[]>? torn = null;
            int[]? order = null;
            string kind;
            if (attempt % 2 == 0)
            {
                // An in-order device: the first k in-flight ops landed, the next one landed in part, the rest did not.
                int k = random.Next(n);
                for (int i = k; i < n; i++) fates[i] = CrashState.Fate.Lost;
                if (inFlight[k].Kind == WriteLogEntryKind.Write && inFlight[k].SectorCount > 1)
                {
                    fates[k] = CrashState.Fate.Torn;
                    torn = new Dictionary<int, bool[]> { [k] = TornMask(random, inFlight[k].SectorCount) };
                }
                kind = $"first {k} in-flight ops kept, #{inFlight[k].Index} {(torn is null ? "lost" : "torn")}, rest lost";
            }
            else
            {
                // Any subset landed, one write landed in part, in any order.
                for (int i = 0; i < n; i++) fates[i] = random.Next(2) == 0 ? CrashState.Fate.Kept : CrashState.Fate.Lost;
                if (tearable.Length > 0)
                {
                    int k = tearable[random.Next(tearable.Length)];
                    fates[k] = CrashState.Fate.Torn;
                    torn = new Dictionary<int, bool[]> { [k] = TornMask(random, inFlight[k].SectorCount) };
                }
                order = Enumerable.Range(0, n).ToArray();
                random.Shuffle(order);
                kind = "random subset kept, one torn, applied in shuffled order";
            }
            if (!seen.Add(Signature(fates, torn))) continue;
            yield return new CrashState(this, point, count, variant++, kind, after, frontiers, inFlight, fates, torn, order);
            if (nextDevice < deviceStates.Count && variant < options.MaxVariantsPerPoint)
                yield return DeviceState(deviceStates[nextDevice++], point, count, variant++, after, frontiers, inFlight);
        }
        while (nextDevice < deviceStates.Count && variant < options.MaxVariantsPerPoint)
            yield return DeviceState(deviceStates[nextDevice++], point, count, variant++, after, frontiers, inFlight);
    }

    private CrashState DeviceState((CrashState.Fate[] Fates, string Kind) state, int point, int count, int variant, string after,
        int[] frontiers, WriteLogEntry[] inFlight) =>
        new(this, point, count, variant, state.Kind, after, frontiers, inFlight, state.Fates, null, null);

    /// <summary>
    /// The states that split the in-flight writes by device, when more than one device has writes in flight (the
    /// states an ordering bug between files loses data in: one file's writes landed, another's did not). First, for
    /// each device, from the one whose last in-flight write is the latest: only that device's in-flight writes kept
    /// (typically the metadata written last, without the data it points at). Then, for each device, from the one whose
    /// first in-flight write is the earliest: only that device's in-flight writes lost, every other device's kept.
    /// </summary>
    private static IEnumerable<(CrashState.Fate[] Fates, string Kind)> DeviceVariants(WriteLogEntry[] inFlight)
    {
        var first = new Dictionary<int, int>();
        var last = new Dictionary<int, int>();
        var names = new Dictionary<int, string>();
        for (int i = 0; i < inFlight.Length; i++)
        {
            int d = inFlight[i].DeviceId;
            first.TryAdd(d, i);
            last[d] = i;
            names[d] = $"{inFlight[i].DeviceName}[{d}]";
        }
        if (first.Count < 2) yield break;
        foreach (int d in last.Keys.OrderByDescending(d => last[d]))
        {
            var fates = new CrashState.Fate[inFlight.Length];
            for (int i = 0; i < fates.Length; i++)
                if (inFlight[i].DeviceId != d) fates[i] = CrashState.Fate.Lost;
            yield return (fates, $"only {names[d]}'s in-flight writes kept");
        }
        foreach (int d in first.Keys.OrderBy(d => first[d]))
        {
            var fates = new CrashState.Fate[inFlight.Length];
            for (int i = 0; i < fates.Length; i++)
                if (inFlight[i].DeviceId == d) fates[i] = CrashState.Fate.Lost;
            yield return (fates, $"only {names[d]}'s in-flight writes lost");
        }
    }

    // A non-empty proper subset of the sectors (sectors >= 2).
    private static bool[] TornMask(Random random, int sectors)
    {
        var mask = new bool[sectors];
        int kept = 0;
        for (int s = 0; s < sectors; s++) if (mask[s] = random.Next(2) == 0) kept++;
        if (kept == 0) mask[random.Next(sectors)] = true;
        else if (kept == sectors) mask[random.Next(sectors)] = false;
        return mask;
    }

    private static string Signature(CrashState.Fate[] fates, Dictionary<int, bool[]>? torn)
    {
        var sb = new System.Text.StringBuilder(fates.Length + 16);
        foreach (CrashState.Fate f in fates) sb.Append((char)('0' + (int)f));
        if (torn is not null)
            foreach (var (k, mask) in torn)
            {
                sb.Append('|').Append(k).Append(':');
                foreach (bool b in mask) sb.Append(b ? '1' : '0');
            }
        return sb.ToString();
    }
}
