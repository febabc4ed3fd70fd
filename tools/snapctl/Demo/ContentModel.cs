namespace SnapCtl.Demo;

/// <summary>
/// What one target (the origin or a snapshot) must contain, sector by sector, so that it can be verified after a
/// crash. Every write gets a version; a write is <em>uncertain</em> from the moment it is issued until a flush that
/// began after it returned has itself returned, and <em>durable</em> after that.
/// <list type="bullet">
/// <item>After a crash, a sector may hold its last durable version or the version of any uncertain write covering
/// it (a crash can keep, lose, tear or reorder writes that were not yet durable); nothing else.</item>
/// <item>A snapshot's model is captured from its origin's model: the durable versions when creation began, plus,
/// as uncertain, every origin write that was uncertain then or was issued before creation returned.</item>
/// </list>
/// Locking: <c>_lock</c> protects <c>_durable</c>, <c>_uncertain</c> and <c>_captures</c>; it is held only for
/// the bookkeeping of one call, never across I/O.
/// </summary>
internal sealed class ContentModel
{
    private readonly object _lock = new();
    private readonly int[] _durable;
    private readonly Dictionary<int, PendingWrite> _uncertain = new();
    private readonly List<Capture> _captures = new();

    /// <summary>A model whose every sector holds version 0 (zeros).</summary>
    public ContentModel(string name, long sectors)
        : this(name, new int[sectors], Array.Empty<PendingWrite>()) { }

    private ContentModel(string name, int[] durable, IEnumerable<PendingWrite> uncertain)
    {
        Name = name;
        _durable = durable;
        foreach (var w in uncertain) _uncertain[w.Version] = w with { Completed = false };
    }

    /// <summary>The target's name ("origin", a snapshot name).</summary>
    public string Name { get; }

    /// <summary>Sectors in the target.</summary>
    public long Sectors => _durable.Length;

    /// <summary>Writes issued against this model.</summary>
    public int Writes { get; private set; }

    /// <summary>A write issued and not yet durable.</summary>
    public sealed record PendingWrite(long Sector, int Count, int Version, bool Completed);

    /// <summary>Records that write <paramref name="version"/> of <paramref name="count"/> sectors at <paramref name="sector"/> is being issued.</summary>
    public void Issue(long sector, int count, int version)
    {
        var w = new PendingWrite(sector, count, version, false);
        lock (_lock)
        {
            _uncertain[version] = w;
            Writes++;
            foreach (var c in _captures) c.Uncertain.Add(w);
        }
    }

    /// <summary>Records that the write returned (visible, not yet durable).</summary>
    public void Completed(int version)
    {
        lock (_lock)
            if (_uncertain.TryGetValue(version, out var w)) _uncertain[version] = w with { Completed = true };
    }

    /// <summary>The versions that had returned when a flush began (pass them to <see cref="Durable"/> when it returns).</summary>
    public int[] CompletedVersions(Func<PendingWrite, bool>? filter = null)
    {
        lock (_lock)
            return _uncertain.Values.Where(w => w.Completed && (filter is null || filter(w))).Select(w => w.Version).ToArray();
    }

    /// <summary>Marks writes durable (a flush that began after they returned has returned), in version order.</summary>
    public void Durable(IEnumerable<int> versions)
    {
        lock (_lock)
        {
            foreach (var v in versions.Order())
            {
                if (!_uncertain.Remove(v, out var w)) continue;
                for (int i = 0; i < w.Count; i++)
                    if (_durable[w.Sector + i] < v) _durable[w.Sector + i] = v;
            }
        }
    }

    /// <summary>Begins capturing a snapshot of this model; dispose the capture when snapshot creation has returned.</summary>
    public Capture BeginCapture(string snapshotName)
    {
        lock (_lock)
        {
            var c = new Capture(this, snapshotName, (int[])_durable.Clone(), new List<PendingWrite>(_uncertain.Values));
            _captures.Add(c);
            return c;
        }
    }

    /// <summary>The versions a crash may have left in <paramref name="sector"/>.</summary>
    public IReadOnlyCollection<int> Acceptable(long sector)
    {
        lock (_lock)
        {
            var set = new HashSet<int> { _durable[sector] };
            foreach (var w in _uncertain.Values)
                if (sector >= w.Sector && sector < w.Sector + w.Count) set.Add(w.Version);
            return set;
        }
    }

    /// <summary>The uncertain writes covering [<paramref name="first"/>, <paramref name="first"/>+<paramref name="count"/>), by sector.</summary>
    public (int[] Durable, Dictionary<long, List<int>> Uncertain) Expected(long first, int count)
    {
        lock (_lock)
        {
            var durable = _durable.AsSpan((int)first, count).ToArray();
            var map = new Dictionary<long, List<int>>();
            foreach (var w in _uncertain.Values)
            {
                long lo = Math.Max(first, w.Sector), hi = Math.Min(first + count, w.Sector + w.Count);
                for (long s = lo; s < hi; s++)
                {
                    if (!map.TryGetValue(s, out var list)) map[s] = list = new List<int>(2);
                    list.Add(w.Version);
                }
            }
            return (durable, map);
        }
    }

    /// <summary>Uncertain writes right now.</summary>
    public int UncertainCount { get { lock (_lock) return _uncertain.Count; } }

    /// <summary>An open snapshot capture: origin writes issued while it is open are uncertain in the snapshot.</summary>
    public sealed class Capture : IDisposable
    {
        private readonly ContentModel _origin;
        private readonly string _name;
        private readonly int[] _base;

        internal Capture(ContentModel origin, string name, int[] @base, List<PendingWrite> uncertain)
        {
            _origin = origin;
            _name = name;
            _base = @base;
            Uncertain = uncertain;
        }

        internal List<PendingWrite> Uncertain { get; }

        /// <summary>Closes the capture and returns the snapshot's model.</summary>
        public ContentModel Finish()
        {
            lock (_origin._lock)
            {
                _origin._captures.Remove(this);
                return new ContentModel(_name, _base, Uncertain);
            }
        }

        /// <inheritdoc/>
        public void Dispose()
        {
            lock (_origin._lock) _origin._captures.Remove(this);
        }
    }
}
