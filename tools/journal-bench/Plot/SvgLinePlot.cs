using System.Globalization;
using System.Security;
using System.Text;

namespace JournalBench.Plot;

/// <summary>
/// A small line chart written as a standalone SVG file: categories evenly spaced along x (e.g. snapshot counts 0, 1, 2,
/// 4, 8, ... which are then evenly spaced like a log axis), a y axis either linear from 0 with round ticks or
/// logarithmic (<see cref="LogY"/>, ticks at 1, 2 and 5 times powers of ten), one polyline with point markers per
/// series, axis labels, a title, a subtitle and a legend. No scripts, fonts or external references.
/// </summary>
internal sealed class SvgLinePlot
{
    /// <summary>One line: a value per category (null: no point there).</summary>
    internal sealed record Series(string Name, IReadOnlyList<double?> Values, string Color, bool Dashed = false);

    public const int Width = 760;
    public const int Height = 460;
    private const int Left = 80, Right = 30, Top = 62, Bottom = 118;

    public required string Title { get; init; }
    public string? Subtitle { get; init; }
    public required string XLabel { get; init; }
    public required string YLabel { get; init; }
    public required IReadOnlyList<string> Categories { get; init; }
    public required IReadOnlyList<Series> Lines { get; init; }

    /// <summary>Logarithmic y axis (values that are not positive are left out).</summary>
    public bool LogY { get; init; }

    /// <summary>Ticks of a logarithmic axis covering [<paramref name="min"/>, <paramref name="max"/>]: 1, 2 and 5 times powers of ten, from the one at or below min to the one at or above max.</summary>
    public static IReadOnlyList<double> LogTicks(double min, double max)
    {
        if (!(min > 0) || !(max >= min) || double.IsInfinity(max)) return [1, 10];
        var ticks = new List<double>();
        double decade = Math.Pow(10, Math.Floor(Math.Log10(min)));
        double low = decade;
        foreach (double f in new[] { 1.0, 2, 5 })
            if (f * decade <= min) low = f * decade;
        for (double d = decade; ; d *= 10)
        {
            foreach (double f in new[] { 1.0, 2, 5 })
            {
                double t = f * d;
                if (t < low * (1 - 1e-9)) continue;
                ticks.Add(t);
                if (t >= max * (1 - 1e-9)) return ticks.Count >= 2 ? ticks : [t, t * 2];
            }
        }
    }

    /// <summary>Round tick step for an axis from 0 to <paramref name="max"/> with about <paramref name="ticks"/> ticks: 1, 2 or 5 times a power of ten.</summary>
    public static double TickStep(double max, int ticks = 5)
    {
        if (!(max > 0) || double.IsInfinity(max)) return 1;
        double raw = max / ticks;
        double p = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double f = raw / p;
        double nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
        return nice * p;
    }

    /// <summary>The SVG document.</summary>
    public string Render()
    {
        if (Categories.Count == 0) throw new InvalidOperationException("a plot needs at least one category");
        foreach (var s in Lines)
            if (s.Values.Count != Categories.Count)
                throw new InvalidOperationException($"series '{s.Name}' has {s.Values.Count} values for {Categories.Count} categories");

        bool Shown(double? v) => v is { } x && double.IsFinite(x) && (!LogY || x > 0);
        var values = Lines.SelectMany(s => s.Values).Where(Shown).Select(v => v!.Value).ToList();
        double max = values.DefaultIfEmpty(0).Max();
        IReadOnlyList<double> ticks;
        if (LogY)
        {
            ticks = LogTicks(values.DefaultIfEmpty(1).Min(), values.DefaultIfEmpty(10).Max());
        }
        else
        {
            double step = TickStep(max);
            double top = Math.Max(step, Math.Ceiling(max / step) * step);
            var linear = new List<double>();
            for (int k = 0; k * step <= top + step / 2; k++) linear.Add(k * step);
            ticks = linear;
        }
        double lo = ticks[0], hi = ticks[^1];
        double plotW = Width - Left - Right, plotH = Height - Top - Bottom;
        double X(int i) => Left + (Categories.Count == 1 ? plotW / 2 : plotW * (0.04 + 0.92 * i / (Categories.Count - 1)));
        double Y(double v) => LogY
            ? Top + plotH * (1 - (Math.Log10(v) - Math.Log10(lo)) / (Math.Log10(hi) - Math.Log10(lo)))
            : Top + plotH * (1 - (v - lo) / (hi - lo));

        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        sb.Append(CultureInfo.InvariantCulture, $"  <title>{Esc(Title)}</title>\n");
        sb.Append(CultureInfo.InvariantCulture, $"  <rect x=\"0\" y=\"0\" width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>\n");
        sb.Append(CultureInfo.InvariantCulture, $"  <text x=\"{Width / 2}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">{Esc(Title)}</text>\n");
        if (Subtitle is not null)
            sb.Append(CultureInfo.InvariantCulture, $"  <text x=\"{Width / 2}\" y=\"40\" text-anchor=\"middle\" font-size=\"11\" fill=\"#555\">{Esc(Subtitle)}</text>\n");

        // Grid and y ticks.
        sb.Append("  <g class=\"y-axis\" stroke=\"#ddd\">\n");
        foreach (double v in ticks)
            sb.Append(CultureInfo.InvariantCulture, $"    <line x1=\"{Left}\" y1=\"{N(Y(v))}\" x2=\"{Width - Right}\" y2=\"{N(Y(v))}\"/>\n");
        sb.Append("  </g>\n  <g class=\"y-ticks\" text-anchor=\"end\">\n");
        foreach (double v in ticks)
            sb.Append(CultureInfo.InvariantCulture, $"    <text x=\"{Left - 6}\" y=\"{N(Y(v) + 4)}\">{Esc(v.ToString("N0", CultureInfo.InvariantCulture))}</text>\n");
        sb.Append("  </g>\n");

        // Axes and x ticks.
        sb.Append(CultureInfo.InvariantCulture, $"  <line x1=\"{Left}\" y1=\"{Top}\" x2=\"{Left}\" y2=\"{N(Top + plotH)}\" stroke=\"black\"/>\n");
        sb.Append(CultureInfo.InvariantCulture, $"  <line x1=\"{Left}\" y1=\"{N(Top + plotH)}\" x2=\"{Width - Right}\" y2=\"{N(Top + plotH)}\" stroke=\"black\"/>\n");
        sb.Append("  <g class=\"x-ticks\" text-anchor=\"middle\">\n");
        for (int i = 0; i < Categories.Count; i++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"    <line x1=\"{N(X(i))}\" y1=\"{N(Top + plotH)}\" x2=\"{N(X(i))}\" y2=\"{N(Top + plotH + 5)}\" stroke=\"black\"/>\n");
            sb.Append(CultureInfo.InvariantCulture, $"    <text x=\"{N(X(i))}\" y=\"{N(Top + plotH + 19)}\">{Esc(Categories[i])}</text>\n");
        }
        sb.Append("  </g>\n");
        sb.Append(CultureInfo.InvariantCulture, $"  <text x=\"{N(Left + plotW / 2)}\" y=\"{N(Top + plotH + 40)}\" text-anchor=\"middle\">{Esc(XLabel)}</text>\n");
        sb.Append(CultureInfo.InvariantCulture, $"  <text x=\"18\" y=\"{N(Top + plotH / 2)}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {N(Top + plotH / 2)})\">{Esc(YLabel)}</text>\n");

        // Series.
        foreach (var s in Lines)
        {
            sb.Append(CultureInfo.InvariantCulture, $"  <g class=\"series\" data-name=\"{Esc(s.Name)}\">\n");
            var points = Enumerable.Range(0, Categories.Count).Where(i => Shown(s.Values[i]))
                .Select(i => $"{N(X(i))},{N(Y(s.Values[i]!.Value))}").ToList();
            if (points.Count > 0)
                sb.Append(CultureInfo.InvariantCulture, $"    <polyline fill=\"none\" stroke=\"{Esc(s.Color)}\" stroke-width=\"2\"{(s.Dashed ? " stroke-dasharray=\"6 4\"" : "")} points=\"{string.Join(' ', points)}\"/>\n");
            for (int i = 0; i < Categories.Count; i++)
                if (Shown(s.Values[i]) && s.Values[i] is { } v)
                    sb.Append(CultureInfo.InvariantCulture, $"    <circle cx=\"{N(X(i))}\" cy=\"{N(Y(v))}\" r=\"3.5\" fill=\"{Esc(s.Color)}\"><title>{Esc($"{s.Name}: {Categories[i]}: {v.ToString("N0", CultureInfo.InvariantCulture)}")}</title></circle>\n");
            sb.Append("  </g>\n");
        }

        // Legend, below the x label.
        double ly = Top + plotH + 62;
        for (int k = 0; k < Lines.Count; k++)
        {
            var s = Lines[k];
            double lx = Left + (k % 2) * (plotW / 2);
            double y = ly + (k / 2) * 18;
            sb.Append(CultureInfo.InvariantCulture, $"  <line x1=\"{N(lx)}\" y1=\"{N(y)}\" x2=\"{N(lx + 26)}\" y2=\"{N(y)}\" stroke=\"{Esc(s.Color)}\" stroke-width=\"2\"{(s.Dashed ? " stroke-dasharray=\"6 4\"" : "")}/>\n");
            sb.Append(CultureInfo.InvariantCulture, $"  <text x=\"{N(lx + 32)}\" y=\"{N(y + 4)}\">{Esc(s.Name)}</text>\n");
        }
        sb.Append("</svg>\n");
        return sb.ToString();
    }

    private static string N(double v) => v.ToString("0.#", CultureInfo.InvariantCulture);

    private static string Esc(string s) => SecurityElement.Escape(s);
}
