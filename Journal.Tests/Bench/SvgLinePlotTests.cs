using System.Xml.Linq;
using JournalBench.Measure;
using JournalBench.Plot;

namespace Journal.Tests.Bench;

/// <summary>The SVG plot journal-bench cow --plot writes: a well-formed document with its lines, labels and legend.</summary>
public class SvgLinePlotTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    private static SvgLinePlot Plot(bool logY) => new()
    {
        Title = "Origin writes & snapshots",
        Subtitle = "a <test>",
        XLabel = "snapshots",
        YLabel = "writes/s",
        Categories = ["0", "1", "2", "4", "8", "16", "32"],
        Lines =
        [
            new("store", [30000, 12000, 9000, 7000, 5000, 3000, 1500], "#1f77b4"),
            new("area scheme", [28000, 3000, 2500, 2000, 1800, 900, null], "#d62728"),
            new("qcow2", [15000, 15000, 15000, 15000, 15000, 15000, 15000], "#7f7f7f", Dashed: true),
        ],
        LogY = logY,
    };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_document_is_well_formed_svg_with_a_line_per_series_and_a_point_per_value(bool logY)
    {
        var doc = XDocument.Parse(Plot(logY).Render());
        Assert.Equal(Svg + "svg", doc.Root!.Name);
        var polylines = doc.Descendants(Svg + "polyline").ToList();
        Assert.Equal(3, polylines.Count);
        Assert.Equal(7 + 6 + 7, doc.Descendants(Svg + "circle").Count());
        var texts = doc.Descendants(Svg + "text").Select(t => t.Value).ToList();
        Assert.Contains("Origin writes & snapshots", texts);
        Assert.Contains("a <test>", texts);
        Assert.Contains("snapshots", texts);
        Assert.Contains("writes/s", texts);
        Assert.Contains("store", texts);
        Assert.Contains("area scheme", texts);
        Assert.Contains("32", texts);
        // Every point lies inside the drawing.
        foreach (var c in doc.Descendants(Svg + "circle"))
        {
            double cx = double.Parse(c.Attribute("cx")!.Value, System.Globalization.CultureInfo.InvariantCulture);
            double cy = double.Parse(c.Attribute("cy")!.Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(cx, 0, SvgLinePlot.Width);
            Assert.InRange(cy, 0, SvgLinePlot.Height);
        }
        Assert.Equal("6 4", polylines[2].Attribute("stroke-dasharray")?.Value);
    }

    [Fact]
    public void Higher_values_are_drawn_higher()
    {
        foreach (bool logY in new[] { false, true })
        {
            var doc = XDocument.Parse(Plot(logY).Render());
            var store = doc.Descendants(Svg + "g").First(g => (string?)g.Attribute("data-name") == "store");
            var ys = store.Elements(Svg + "circle").Select(c => double.Parse(c.Attribute("cy")!.Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
            for (int i = 1; i < ys.Count; i++) Assert.True(ys[i] > ys[i - 1], "falling values must go down the page");
        }
    }

    [Fact]
    public void Ticks_are_round_and_cover_the_values()
    {
        Assert.Equal(5000, SvgLinePlot.TickStep(23_611));
        Assert.Equal(0.2, SvgLinePlot.TickStep(1), 9);
        var ticks = SvgLinePlot.LogTicks(1_101, 27_949);
        Assert.Equal([1000, 2000, 5000, 10000, 20000, 50000], ticks);
        Assert.Equal([100, 200], SvgLinePlot.LogTicks(100, 100));
    }

    [Fact]
    public void A_series_of_the_wrong_length_is_refused()
    {
        var plot = new SvgLinePlot
        {
            Title = "t", XLabel = "x", YLabel = "y", Categories = ["a", "b"],
            Lines = [new("s", [1.0], "#000")],
        };
        Assert.Throws<InvalidOperationException>(() => plot.Render());
    }

    [Fact]
    public void Load_average_is_read_from_proc_loadavg_text()
    {
        var l = LoadAverage.Parse("21.38 22.29 22.99 3/712 9606\n");
        Assert.Equal(new LoadAverage(21.38, 22.29, 22.99), l);
        Assert.Equal("21.38, 22.29, 22.99", l!.Value.ToString());
        Assert.Null(LoadAverage.Parse("garbage"));
    }
}
