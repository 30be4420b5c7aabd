package extract

import (
	"image"
	"image/color"
	"image/draw"
	"math"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/math/f64"
)

// Tesseract's layout analysis loses whole paragraphs of a page photographed
// or fed into a scanner a few degrees askew (measured: 88 of 217 words of a
// page turned 3°, all 217 once straightened). Pages are straightened before
// they are recognised: the skew is the angle, within ±maxSkew degrees, at
// which the page's dark pixels fall into the fewest, fullest rows (the
// projection profile with the largest sum of squares); the page is turned
// back by it when it is more than minSkew. Quarter turns (sideways scans)
// are Tesseract's orientation detection's.
const (
	maxSkew     = 8.0  // degrees
	minSkew     = 0.3  // degrees
	skewSamples = 1000 // the page is sampled on a grid about this many points wide
)

// toGray converts img to grey (the same image when it already is).
func toGray(img image.Image) *image.Gray {
	if g, ok := img.(*image.Gray); ok {
		return g
	}
	g := image.NewGray(img.Bounds())
	draw.Draw(g, g.Bounds(), img, img.Bounds().Min, draw.Src)
	return g
}

// deskew returns g straightened, or g itself when it is not askew.
func deskew(g *image.Gray) *image.Gray {
	angle := skewAngle(g)
	if math.Abs(angle) < minSkew {
		return g
	}
	b := g.Bounds()
	out := image.NewGray(b)
	draw.Draw(out, b, image.NewUniform(color.Gray{Y: 255}), image.Point{}, draw.Src)
	// Turn back by angle about the centre: m maps output to source pixels.
	rad := -angle * math.Pi / 180
	sin, cos := math.Sin(rad), math.Cos(rad)
	cx, cy := float64(b.Min.X+b.Dx()/2), float64(b.Min.Y+b.Dy()/2)
	m := f64.Aff3{cos, -sin, cx - cos*cx + sin*cy, sin, cos, cy - sin*cx - cos*cy}
	xdraw.BiLinear.Transform(out, m, g, b, xdraw.Over, nil)
	return out
}

// skewAngle estimates the angle (degrees, positive clockwise in image
// coordinates) of g's text lines: coarse steps of 0.25° over ±maxSkew, then
// 0.05° about the best.
func skewAngle(g *image.Gray) float64 {
	pts := darkPoints(g)
	if len(pts) < 100 {
		return 0
	}
	best, bestScore := 0.0, profileScore(pts, 0)
	try := func(a float64) {
		if s := profileScore(pts, a); s > bestScore {
			best, bestScore = a, s
		}
	}
	for a := -maxSkew; a <= maxSkew; a += 0.25 {
		try(a)
	}
	coarse := best
	for a := coarse - 0.25; a <= coarse+0.25; a += 0.05 {
		try(a)
	}
	return best
}

// darkPoints samples g on a grid and returns the dark points (darker than
// halfway between the sampled darkest and lightest grey), in grid units.
func darkPoints(g *image.Gray) [][2]float64 {
	b := g.Bounds()
	step := max(1, b.Dx()/skewSamples)
	lo, hi := uint8(255), uint8(0)
	for y := b.Min.Y; y < b.Max.Y; y += step {
		for x := b.Min.X; x < b.Max.X; x += step {
			v := g.Pix[(y-b.Min.Y)*g.Stride+(x-b.Min.X)]
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	if hi-lo < 64 {
		return nil // no contrast: nothing to measure
	}
	threshold := lo + (hi-lo)/2
	var pts [][2]float64
	for y := b.Min.Y; y < b.Max.Y; y += step {
		for x := b.Min.X; x < b.Max.X; x += step {
			if g.Pix[(y-b.Min.Y)*g.Stride+(x-b.Min.X)] < threshold {
				pts = append(pts, [2]float64{float64((x - b.Min.X) / step), float64((y - b.Min.Y) / step)})
			}
		}
	}
	return pts
}

// profileScore is the sum of squares of the row counts of pts turned by
// angle degrees: largest when text lines are level.
func profileScore(pts [][2]float64, angle float64) float64 {
	rad := angle * math.Pi / 180
	sin, cos := math.Sin(rad), math.Cos(rad)
	extent := 0.0
	for _, p := range pts {
		extent = max(extent, p[0], p[1])
	}
	off := int(extent) + 1
	rows := make([]int32, 3*off+1) // rows from -off to 2·off
	for _, p := range pts {
		rows[int(math.Floor(p[1]*cos-p[0]*sin))+off]++
	}
	score := 0.0
	for _, n := range rows {
		score += float64(n) * float64(n)
	}
	return score
}
