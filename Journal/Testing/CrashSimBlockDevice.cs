using Journal.Storage;

namespace Journal.Testing;

/// <summary>
/// An in-memory device that models what a crash leaves behind. It keeps the durable image (as of the last completed
/// flush) and every write and growth since, in order; reads see the current image.
/// </summary>
/// <remarks>
/// Crash model (<see cref="CrashImage(Random)"/>): every flushed write is intact. Each write since the last flush
/// is independently kept whole, lost, or torn (an arbitrary subset of its sectors applied), and the survivors are
/// applied in a random order, so a later write to a sector may land before an earlier one and be overwritten by
/// it. A growth since the last flush is kept or lost; sectors past the surviving size are cut off. The same seed
/// gives the same image.
/// <para>Locking: <c>_lock</c> (a monitor) protects the current image, the durable image and the pending list; every
/// operation holds it for its whole length, so operations are serialised. Nothing waits while holding it.</para>
/// </remarks>
public sealed class CrashSimBlockDevice : BlockDevice
{
    private readonly object _lock = new();
    private readonly string _name;
    private byte[] _current;
    private byte[] _durable;
    private readonly List<PendingOp> _pending = new();

    // A write (Data != null) or a growth to NewSectors (Data == null) not yet covered by a flush.
    private readonly record struct PendingOp(long Sector, byte[]? Data, long NewSectors);

    /// <summary>Creates a zero-filled device whose zeros are durable.</summary>
    public CrashSimBlockDevice(long sectorCount, string name = "crashsim")
        : this(new byte[CheckSize(name, sectorCount)], name) { }

    private CrashSimBlockDevice(byte[] image, string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        _name = name;
        _current = image;
        _durable = ImageCopy.Of(image);
    }

    /// <summary>Creates a device whose durable (and current) content is a copy of <paramref name="image"/>.</summary>
    public static CrashSimBlockDevice FromImage(ReadOnlySpan<byte> image, string name = "crashsim")
    {
        if ((image.Length & (SectorSize - 1)) != 0)
            throw new ArgumentException($"{name}: image length {image.Length} is not a whole number of {SectorSize}-byte sectors.");
        return new CrashSimBlockDevice(image.ToArray(), name);
    }

    private static int CheckSize(string name, long sectorCount)
    {
        if (sectorCount < 0 || sectorCount > Array.MaxLength >> SectorShift)
            throw new BlockDeviceException(name, sectorCount, $"size of {sectorCount} sectors is outside what a memory device holds");
        return (int)(sectorCount << SectorShift);
    }

    /// <inheritdoc/>
    public override string Name => _name;

    /// <inheritdoc/>
    public override long SectorCount { get { lock (_lock) return _current.Length >> SectorShift; } }

    /// <summary>Writes and growths issued since the last flush.</summary>
    public int PendingCount { get { lock (_lock) return _pending.Count; } }

    /// <summary>A copy of the current image (what reads see; equals a crash that kept every write in order).</summary>
    public byte[] ToArray() { lock (_lock) return ImageCopy.Of(_current); }

    /// <summary>The image a crash that kept every unflushed write, in order, would leave: the current image.</summary>
    public byte[] CrashImageKeepingAll() => ToArray();

    /// <summary>The image a crash that lost every unflushed write would leave: the durable image.</summary>
    public byte[] CrashImageLosingAll() { lock (_lock) return ImageCopy.Of(_durable); }

    /// <summary>The image a crash now could leave, chosen by <paramref name="seed"/> (see the class remarks).</summary>
    public byte[] CrashImage(int seed) => CrashImage(new Random(seed), out _);

    /// <summary>The image a crash now could leave, chosen by <paramref name="random"/>.</summary>
    public byte[] CrashImage(Random random) => CrashImage(random, out _);

    /// <summary>
    /// The image a crash now could leave, chosen by <paramref name="random"/>, with a one-line account of what
    /// happened to each unflushed write (for test failure messages).
    /// </summary>
    public byte[] CrashImage(Random random, out string description)
    {
        ArgumentNullException.ThrowIfNull(random);
        lock (_lock)
        {
            ThrowIfDisposed();
            return BuildCrashImage(random, out description);
        }
    }

    /// <summary>The account <see cref="CrashImage(Random, out string)"/> gives for <paramref name="seed"/>.</summary>
    public string DescribeCrash(int seed)
    {
        CrashImage(new Random(seed), out string description);
        return description;
    }

    /// <summary>
    /// Crashes the device in place: the image chosen by <paramref name="seed"/> becomes both the durable and the
    /// current image and the pending writes are forgotten, as after a reboot. Returns the account of the crash.
    /// </summary>
    public string SimulateCrash(int seed)
    {
        lock (_lock)
        {
            ThrowIfDisposed();
            byte[] image = BuildCrashImage(new Random(seed), out string description);
            _current = image;
            _durable = ImageCopy.Of(image);
            _pending.Clear();
            return description;
        }
    }

    // Caller holds _lock.
    private byte[] BuildCrashImage(Random random, out string description)
    {
        int n = _pending.Count;
        var fate = new string[n];
        var masks = new bool[n][];
        long size = _durable.Length >> SectorShift;
        for (int i = 0; i < n; i++)
        {
            PendingOp op = _pending[i];
            if (op.Data is null)
            {
                bool keep = random.Next(2) == 0;
                fate[i] = keep ? "kept" : "lost";
                if (keep) size = Math.Max(size, op.NewSectors);
                continue;
            }
            int sectors = op.Data.Length >> SectorShift;
            var mask = new bool[sectors];
            switch (random.Next(3))
            {
                case 0:
                    Array.Fill(mask, true);
                    fate[i] = "kept";
                    break;
                case 1:
                    fate[i] = "lost";
                    break;
                default:
                    int kept = 0;
                    for (int s = 0; s < sectors; s++) if (mask[s] = random.Next(2) == 0) kept++;
                    fate[i] = kept == sectors ? "kept" : kept == 0 ? "lost" : $"torn({kept}/{sectors})";
                    break;
            }
            masks[i] = mask;
        }

        int[] order = Enumerable.Range(0, n).ToArray();
        random.Shuffle(order);

        var image = new byte[size << SectorShift];
        _durable.AsSpan(0, (int)Math.Min(_durable.Length, image.Length)).CopyTo(image);
        foreach (int i in order)
        {
            PendingOp op = _pending[i];
            if (op.Data is null) continue;
            bool[] mask = masks[i];
            for (int s = 0; s < mask.Length; s++)
            {
                long target = op.Sector + s;
                if (!mask[s] || target >= size) continue;
                op.Data.AsSpan(s << SectorShift, SectorSize).CopyTo(image.AsSpan((int)(target << SectorShift), SectorSize));
            }
        }

        var text = new System.Text.StringBuilder($"{_name}: crash with {n} unflushed ops");
        if (n > 0) text.Append(", applied in order ").Append(string.Join(",", order)).Append(':');
        for (int i = 0; i < n; i++)
        {
            PendingOp op = _pending[i];
            text.Append(' ').Append(i).Append('=')
                .Append(op.Data is null ? $"extend->{op.NewSectors}" : $"write@{op.Sector}+{op.Data.Length >> SectorShift}")
                .Append(' ').Append(fate[i]);
        }
        description = text.ToString();
        return image;
    }

    /// <inheritdoc/>
    protected override void ReadCore(long sector, Span<byte> buffer)
    {
        lock (_lock) _current.AsSpan((int)(sector << SectorShift), buffer.Length).CopyTo(buffer);
    }

    /// <inheritdoc/>
    protected override void WriteCore(long sector, ReadOnlySpan<byte> data)
    {
        byte[] copy = data.ToArray();
        lock (_lock)
        {
            copy.CopyTo(_current.AsSpan((int)(sector << SectorShift)));
            _pending.Add(new PendingOp(sector, copy, 0));
        }
    }

    /// <inheritdoc/>
    protected override void FlushCore()
    {
        lock (_lock)
        {
            // Everything issued so far is now durable: replay the pending ops onto the durable image, in order
            // (cost proportional to what was written, not to the device size).
            foreach (PendingOp op in _pending)
            {
                if (op.Data is null)
                {
                    if (op.NewSectors << SectorShift > _durable.Length)
                    {
                        var bigger = new byte[op.NewSectors << SectorShift];
                        _durable.CopyTo(bigger, 0);
                        _durable = bigger;
                    }
                }
                else
                {
                    op.Data.CopyTo(_durable.AsSpan((int)(op.Sector << SectorShift)));
                }
            }
            _pending.Clear();
        }
    }

    /// <inheritdoc/>
    protected override void ExtendCore(long sectorCount)
    {
        int bytes = CheckSize(_name, sectorCount);
        lock (_lock)
        {
            if (bytes <= _current.Length) return;
            var bigger = new byte[bytes];
            _current.CopyTo(bigger, 0);
            _current = bigger;
            _pending.Add(new PendingOp(0, null, sectorCount));
        }
    }
}
